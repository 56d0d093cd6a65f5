"""A successful payment is credited exactly once, whatever is replayed, duplicated or crashed;
a refund takes the credits back once, never below zero. Every change has its ledger row."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from flick.actors.messages import Crash
from flick.i18n import t
from flick.models.db import pool
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness
from flick.testing.harnesses import HarnessFactory
from flick.testing.shop import Shop

UID = 1001
OTHER = 1002


async def test_the_same_charge_fifty_times_at_once_credits_once(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 1)  # 5 credits for 225 Stars
    payload, amount = invoice.extra["payload"], invoice.extra["amount"]
    copies = [shop.paid(h, UID, payload, "charge-50", amount) for _ in range(50)]
    assert len({c.event_id for c in copies}) == 50
    await asyncio.gather(*(h.send(c) for c in copies))
    await h.settle()

    money = await shop.money(UID)
    assert money.balance == 1 + 5 == money.ledger_sum
    assert money.reasons == ["free", "purchase"]
    assert len(money.payments) == 1
    payment = money.payments[0]
    assert payment["telegram_payment_charge_id"] == "charge-50"
    assert payment["provider_payment_charge_id"] == "provider-charge-50"
    assert (payment["stars_amount"], payment["credits"], payment["status"]) == (225, 5, "paid")
    assert payment["order"] == money.orders[0]["id"]
    assert money.ledger[1]["payment"] == payment["id"] and money.ledger[1]["delta"] == 5
    assert money.orders[0]["status"] == "paid"
    assert shop.texts(h, UID).count(t("en", "payment_thanks", n=5, balance=6)) == 1
    assert h.app.supervisor.actors[UID].conv.balance == 6


async def test_concurrent_copies_spread_over_many_users_actors(
    harness: HarnessFactory, shop: Shop
) -> None:
    """Copies of one charge arriving as several users' updates (a replay gone wrong) still
    insert one payment: the unique charge id decides, not the actor."""
    h = await harness()
    invoice = await shop.buy(h, UID, 0)
    payload = invoice.extra["payload"]
    events = [shop.paid(h, uid, payload, "charge-shared", 50) for uid in (UID, OTHER) * 10]
    await asyncio.gather(*(h.send(e) for e in events))
    await h.settle()
    assert await pool().fetchval("SELECT count(*) FROM payments") == 1
    assert await pool().fetchval("SELECT count(*) FROM ledger WHERE reason = 'purchase'") == 1


async def test_a_crash_between_copies_does_not_credit_twice(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 0)
    payload = invoice.extra["payload"]
    first = await shop.pay(h, UID, payload, "charge-crash", 50)
    h.app.supervisor.post(UID, Crash())
    await h.settle()
    assert h.app.supervisor.crashes == 1
    await h.send(first)  # the very same update again: the new actor never saw it
    await shop.pay(h, UID, payload, "charge-crash", 50)  # and another copy
    money = await shop.money(UID)
    assert money.balance == 2 == money.ledger_sum
    assert money.reasons == ["free", "purchase"] and len(money.payments) == 1
    assert shop.texts(h, UID).count(t("en", "payment_thanks", n=1, balance=2)) == 1


async def test_a_replay_after_a_restart_does_not_credit_twice(
    database_url: str, storage: S3Storage, tmp_path: Path, shop: Shop
) -> None:
    async with EngineHarness(database_url, storage, tmp_path / "one") as first:
        invoice = await shop.buy(first, UID, 2)
        event = await shop.pay(first, UID, invoice.extra["payload"], "charge-restart", 400)
        assert await first.balance(UID) == 11
    async with EngineHarness(database_url, storage, tmp_path / "two", fresh=False) as second:
        await second.send(event)
        await second.settle()
        money = await shop.money(UID)
        assert money.balance == 11 == money.ledger_sum
        assert money.reasons == ["free", "purchase"]
        assert shop.texts(second, UID) == []  # nothing to say: it was credited before
        await second.command(UID, "balance")
        await second.settle()
        assert shop.texts(second, UID) == [t("en", "balance", n=11)]


async def test_two_charges_for_one_invoice_are_both_credited(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 1)
    payload = invoice.extra["payload"]
    await shop.pay(h, UID, payload, "charge-a", 225)
    await shop.pay(h, UID, payload, "charge-b", 225)
    money = await shop.money(UID)
    assert money.balance == 1 + 5 + 5 == money.ledger_sum
    assert [p["telegram_payment_charge_id"] for p in money.payments] == ["charge-a", "charge-b"]
    assert all(p["order"] == money.orders[0]["id"] for p in money.payments)
    assert money.reasons == ["free", "purchase", "purchase"]


@pytest.mark.parametrize(
    ("payload", "stars", "credits"),
    [
        ("", 50, 1),
        ("garbage", 225, 5),
        (f"order:{uuid.UUID(int=7)}", 400, 10),
        ("order:not-a-uuid", 875, 25),
        ("order:xyz", 300, 5),  # between packages: the best one it pays for
        ("nothing", 1, 1),  # less than any package: still at least one credit
    ],
)
async def test_a_payment_naming_no_order_is_credited_by_amount(
    harness: HarnessFactory, shop: Shop, payload: str, stars: int, credits: int
) -> None:
    h = await harness()
    await shop.pay(h, UID, payload, "charge-orphan", stars)
    money = await shop.money(UID)
    assert money.balance == 1 + credits == money.ledger_sum
    assert len(money.payments) == 1
    payment = money.payments[0]
    assert payment["order"] is None and payment["invoice_payload"] == payload
    assert (payment["stars_amount"], payment["credits"]) == (stars, credits)
    assert shop.texts(h, UID)[-1] == t("en", "payment_thanks", n=credits, balance=1 + credits)


async def test_a_payment_naming_another_users_order_is_credited_by_amount(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    theirs = await shop.buy(h, OTHER, 3)  # 25 credits for 875
    await shop.pay(h, UID, theirs.extra["payload"], "charge-x", 50)
    money = await shop.money(UID)
    assert money.balance == 2 and money.payments[0]["order"] is None
    other = await shop.money(OTHER)
    assert other.orders[0]["status"] == "pending" and other.balance == 1


async def test_refund_takes_the_credits_back_once(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 1)
    await shop.pay(h, UID, invoice.extra["payload"], "charge-r", 225)
    assert await h.balance(UID) == 6
    await h.send(shop.refunded(h, UID, "charge-r", 225))
    await h.settle()
    money = await shop.money(UID)
    assert money.balance == 1 == money.ledger_sum
    assert money.reasons == ["free", "purchase", "payment_refunded"]
    assert (
        money.ledger[-1]["delta"] == -5 and money.ledger[-1]["payment"] == money.payments[0]["id"]
    )
    assert money.payments[0]["status"] == "refunded" and money.payments[0]["refunded_at"]
    assert shop.texts(h, UID)[-1] == t("en", "payment_refunded", n=5, balance=1)
    assert h.app.supervisor.actors[UID].conv.balance == 1

    # The same refund again (another update, or the same one): nothing changes.
    said = len(shop.texts(h, UID))
    await h.send(shop.refunded(h, UID, "charge-r", 225))
    await h.settle()
    assert await shop.money(UID) == money
    assert len(shop.texts(h, UID)) == said
    # A refund of a charge we never saw changes nothing either.
    await h.send(shop.refunded(h, UID, "charge-unknown", 50))
    await h.settle()
    assert await shop.money(UID) == money


async def test_refund_after_spending_never_goes_below_zero(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 0)  # one credit
    await shop.pay(h, UID, invoice.extra["payload"], "charge-spent", 50)
    await shop.make_video(h, UID)
    await shop.make_video(h, UID)  # the free credit and the bought one are both spent
    assert await h.balance(UID) == 0
    await h.send(shop.refunded(h, UID, "charge-spent", 50))
    await h.settle()
    money = await shop.money(UID)
    assert money.balance == 0 == money.ledger_sum
    assert money.ledger[-1]["reason"] == "payment_refunded" and money.ledger[-1]["delta"] == 0
    assert "already spent" in money.ledger[-1]["note"]
    assert money.payments[0]["status"] == "refunded"
    assert shop.texts(h, UID)[-1] == t("en", "payment_refunded", n=0, balance=0)
    await h.send(shop.refunded(h, UID, "charge-spent", 50))
    await h.settle()
    assert await shop.money(UID) == money


async def test_partial_refund_takes_what_is_left(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 1)  # five credits
    await shop.pay(h, UID, invoice.extra["payload"], "charge-part", 225)
    await shop.make_video(h, UID)
    await shop.make_video(h, UID)
    assert await h.balance(UID) == 4
    await h.send(shop.refunded(h, UID, "charge-part", 225))
    await h.settle()
    money = await shop.money(UID)
    assert money.balance == 0 == money.ledger_sum
    assert money.ledger[-1]["delta"] == -4


async def test_paying_lets_an_out_of_credit_user_create(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    await shop.make_video(h, UID)
    await h.command(UID, "create")
    await h.settle()
    assert shop.texts(h, UID)[-1] == t("en", "no_credits", balance=0)
    invoice = await shop.buy(h, UID, 0)
    answer = await shop.pre_checkout(h, UID, invoice.extra["payload"], 50)
    assert answer.extra["ok"]
    await shop.pay(h, UID, invoice.extra["payload"], "charge-then-create", 50)
    await shop.make_video(h, UID)
    money = await shop.money(UID)
    assert money.balance == 0 == money.ledger_sum
    assert money.reasons == ["free", "generation", "purchase", "generation"]


async def test_a_payment_behind_a_flood_of_messages_is_still_credited(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(mailbox_size=8)
    invoice = await shop.buy(h, UID, 0)
    for n in range(20):  # the user mashes a button while paying
        await h.text(UID, f"hello {n}")
    query = shop.paid(h, UID, invoice.extra["payload"], "charge-flood", 50)
    await h.send(query)
    await h.settle()
    assert await h.balance(UID) == 2


async def test_a_pre_checkout_behind_a_flood_of_messages_is_answered(
    harness: HarnessFactory, shop: Shop
) -> None:
    from flick import events as ev

    h = await harness(mailbox_size=8)
    invoice = await shop.buy(h, UID, 0)
    for n in range(20):
        await h.text(UID, f"hello {n}")
    query = ev.PreCheckout(h.user(UID), h.next_id(), "q-flood", "XTR", 50, invoice.extra["payload"])
    await h.send(query)
    await h.settle()
    assert len(shop.answers_to(h, "q-flood")) == 1


async def test_out_of_credit_at_the_second_photo_does_not_leave_the_user_stuck(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(free_credits=0)
    invoice = await shop.buy(h, UID, 0)
    await shop.pay(h, UID, invoice.extra["payload"], "charge-gone", 50)
    await h.command(UID, "create")
    await h.settle()
    await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    await h.pick_style(UID)
    await h.settle()
    await h.send(shop.refunded(h, UID, "charge-gone", 50))  # balance 0 mid-conversation
    await h.settle()
    await h.photo(UID)
    await h.photo(UID)
    await h.settle()
    assert shop.texts(h, UID)[-1] == t("en", "no_credits_photos_kept", balance=0)
    # They buy a credit, as offered, and the video starts from the photos they already sent.
    again = await shop.buy(h, UID, 0)
    await shop.pay(h, UID, again.extra["payload"], "charge-again", 50)
    await h.photo(UID)
    await h.settle()
    assert t("en", "photos_enough") not in shop.texts(h, UID)[-2:]
    row = await pool().fetchrow('SELECT state, data FROM user_sessions WHERE "user" = $1', UID)
    stuck = row["state"] == "waiting_for_photos" and len(json.loads(row["data"])["photos"]) == 2
    assert not stuck, "waiting for photos while holding two, with no video coming"
