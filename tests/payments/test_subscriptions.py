"""Star subscriptions: a plan sold as a 30-day Telegram Star subscription. The first payment and
every renewal credit the plan's credits exactly once; renewal is turned off and on from
/subscription or in Telegram; unused plan credits carry over or expire (configuration), and the
ledger says which; refunds and reconciliation cover subscription charges."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from flick import events as ev
from flick.actors.messages import Crash
from flick.errors import FinalError
from flick.i18n import t
from flick.models.db import pool
from flick.payments.reconcile import StarTransaction
from flick.ports import ComposedImage
from flick.testing.engine import EngineHarness
from flick.testing.harnesses import HarnessFactory
from flick.testing.memory import Sent
from flick.testing.shop import Shop

UID, OTHER = 1601, 1602
PLANS = "monthly:30:900"
PERIOD = 30 * 24 * 3600


def sub_paid(
    h: EngineHarness,
    uid: int,
    payload: str,
    charge: str,
    stars: int = 900,
    *,
    first: bool,
    until: int = 0,
) -> ev.PaymentSucceeded:
    until = until or int(time.time()) + PERIOD
    return ev.PaymentSucceeded(
        h.user(uid), f"pay:{charge}", charge, "", "XTR", stars, payload,
        recurring=True, first_recurring=first, subscription_until=until,
    )  # fmt: skip


def sent(h: EngineHarness, method: str, uid: int | None = None) -> list[Sent]:
    return [s for s in h.outbox.sent if s.method == method and uid in (None, s.chat_id)]


async def subscribe_link(h: EngineHarness, uid: int, plan: str = "monthly") -> str:
    """/subscription, then the plan's button: returns the invoice link's payload."""
    await h.command(uid, "subscription")
    await h.settle()
    await h.press(uid, f"sub:plan:{plan}")
    await h.settle()
    return str(sent(h, "create_invoice_link")[-1].extra["payload"])


async def subscribe(
    h: EngineHarness, uid: int, charge: str = "first", stars: int = 900, until: int = 0
) -> str:
    plans = h.app.supervisor.ctx.plans
    payload = await subscribe_link(h, uid, "monthly" if "monthly" in plans else next(iter(plans)))
    await h.send(sub_paid(h, uid, payload, charge, stars, first=True, until=until))
    await h.settle()
    return payload


async def sub_row(uid: int) -> dict[str, Any]:
    row = await pool().fetchrow('SELECT * FROM subscriptions WHERE "user" = $1', uid)
    return dict(row) if row else {}


async def reasons(uid: int) -> list[tuple[str, int]]:
    rows = await pool().fetch('SELECT reason, delta FROM ledger WHERE "user" = $1 ORDER BY id', uid)
    return [(r["reason"], r["delta"]) for r in rows]


async def test_a_plan_is_sold_as_a_thirty_day_star_subscription_link(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    await h.command(UID, "subscription")
    await h.settle()
    offer = h.last_keyboard(UID)
    assert offer.text == t("en", "subscription_offer", ended="", balance=1)
    assert offer.buttons() == [(t("en", "plan_button", n=30, stars=900), "sub:plan:monthly")]
    payload = await subscribe_link(h, UID)
    link = sent(h, "create_invoice_link")[-1]
    assert link.extra["subscription_period"] == PERIOD
    assert (link.extra["currency"], link.extra["amount"]) == ("XTR", 900)
    assert link.text == t("en", "plan_title", n=30)
    message = h.last_keyboard(UID)
    assert message.text == t("en", "subscription_link", n=30, stars=900)
    assert [b.url for row in message.keyboard or () for b in row] == [
        "https://t.me/$invoice" + str(link.message_id)
    ]
    order = await pool().fetchrow("SELECT plan, package_credits, stars, status FROM orders")
    assert dict(order) == {
        "plan": "monthly",
        "package_credits": 30,
        "stars": 900,
        "status": "pending",
    }
    answer = await shop.pre_checkout(h, UID, payload, 900)
    assert answer.extra["ok"] is True


async def test_first_payment_and_every_renewal_credit_exactly_once(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    now = int(time.time())
    payload = await subscribe(h, UID, "first", until=now + PERIOD)
    assert await h.balance(UID) == 1 + 30
    renewal = sub_paid(h, UID, payload, "renew-1", first=False, until=now + 2 * PERIOD)
    await asyncio.gather(*(h.send(renewal) for _ in range(5)))  # one renewal, delivered 5 times
    await h.settle()
    await h.send(sub_paid(h, UID, payload, "renew-1", first=False, until=now + 2 * PERIOD))
    await h.settle()  # …and once more as a new update with the same charge
    assert await h.balance(UID) == 1 + 60 == await h.ledger_sum(UID)
    await h.send(sub_paid(h, UID, payload, "renew-2", first=False, until=now + 3 * PERIOD))
    await h.settle()
    assert await h.balance(UID) == 1 + 90
    assert await reasons(UID) == [("free", 1)] + [("subscription", 30)] * 3
    row = await sub_row(UID)
    assert (row["charge_id"], row["renewals"], row["renews"]) == ("first", 2, True)
    assert int(row["period_end"].timestamp()) == now + 3 * PERIOD
    kinds = await pool().fetch("SELECT kind, subscription FROM payments ORDER BY id")
    assert [(r["kind"], r["subscription"]) for r in kinds] == [("subscription", row["id"])] * 3
    texts = shop.texts(h, UID)
    date = f"{row['period_end']:%Y-%m-%d}"
    carried = t("en", "subscription_carried_note", n=30)  # none of it used yet
    assert texts[-1] == t(
        "en", "subscription_renewed", n=30, date=date, balance=91, expired=carried
    )
    assert sum("Your subscription renewed" in text for text in texts) == 2
    await h.command(UID, "subscription")
    await h.settle()
    shown = h.last_keyboard(UID)
    assert date in shown.text and "renews on" in shown.text
    assert shown.buttons() == [(t("en", "button_sub_cancel"), f"sub:cancel:{row['id']}")]


async def test_cancel_and_resume_from_subscription(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness(plans=PLANS)
    await subscribe(h, UID, "first-c")
    sub = await sub_row(UID)
    await h.press(UID, f"sub:cancel:{sub['id']}")
    await h.settle()
    edit = sent(h, "edit_subscription", UID)
    assert [(e.extra["charge_id"], e.extra["canceled"]) for e in edit] == [("first-c", True)]
    assert ((await sub_row(UID))["renews"], (await sub_row(UID))["canceled_by"]) == (False, "bot")
    date = f"{sub['period_end']:%Y-%m-%d}"
    assert shop.texts(h, UID)[-1] == t("en", "subscription_canceled", date=date)
    await h.press(UID, f"sub:cancel:{sub['id']}")  # a second tap on the old button
    await h.settle()
    assert shop.texts(h, UID)[-1] == t("en", "subscription_already_off", date=date)
    assert len(sent(h, "edit_subscription", UID)) == 1
    await h.command(UID, "subscription")
    await h.settle()
    assert h.last_keyboard(UID).buttons() == [
        (t("en", "button_sub_resume"), f"sub:resume:{sub['id']}")
    ]
    await h.press(UID, f"sub:resume:{sub['id']}")
    await h.settle()
    assert [e.extra["canceled"] for e in sent(h, "edit_subscription", UID)] == [True, False]
    assert (await sub_row(UID))["renews"] is True
    assert shop.texts(h, UID)[-1] == t("en", "subscription_resumed", date=date)


async def test_forged_subscription_buttons_change_nothing(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    await subscribe(h, UID, "mine")
    await subscribe(h, OTHER, "theirs")
    theirs = await sub_row(OTHER)
    for data in (f"sub:cancel:{theirs['id']}", "sub:cancel:x", "sub:resume:", "sub:plan:gold",
                 "sub:", "sub:delete:1"):  # fmt: skip
        await h.press(UID, data)
        await h.settle()
    assert sent(h, "edit_subscription") == []
    assert (await sub_row(OTHER))["renews"] is True
    stale = [s for s in h.outbox.sent if s.method == "answer_button" and s.text]
    assert len(stale) == 6 and {s.text for s in stale} == {t("en", "button_stale")}


async def test_renewal_turned_off_in_telegram_is_for_the_user_to_turn_on(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    payload = await subscribe(h, UID, "first-u")
    sub = await sub_row(UID)
    date = f"{sub['period_end']:%Y-%m-%d}"
    changed = ev.SubscriptionChanged(h.user(UID), "sub:1:1601", payload, "canceled")
    await h.send(changed)
    await h.send(changed)  # redelivered
    await h.settle()
    assert ((await sub_row(UID))["renews"], (await sub_row(UID))["canceled_by"]) == (False, "user")
    assert shop.texts(h, UID).count(t("en", "subscription_canceled_by_user", date=date)) == 1
    await h.press(UID, f"sub:resume:{sub['id']}")
    await h.settle()
    assert shop.texts(h, UID)[-1] == t("en", "subscription_resume_in_telegram")
    assert sent(h, "edit_subscription") == []
    await h.send(ev.SubscriptionChanged(h.user(UID), "sub:2:1601", payload, "restored"))
    await h.settle()
    assert (await sub_row(UID))["renews"] is True
    await h.send(ev.SubscriptionChanged(h.user(UID), "sub:3:1601", payload, "payment_failed"))
    await h.send(ev.SubscriptionChanged(h.user(UID), "sub:4:1601", "order:unknown", "canceled"))
    await h.settle()
    assert shop.texts(h, UID)[-1] == t("en", "subscription_payment_failed", date=date)
    await h.command(UID, "subscription")
    await h.settle()
    assert t("en", "subscription_note_failed") in h.last_keyboard(UID).text


async def test_a_renewal_after_cancelling_is_credited_and_renewal_stays_off(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    payload = await subscribe(h, UID, "first-x")
    sub = await sub_row(UID)
    await h.press(UID, f"sub:cancel:{sub['id']}")
    await h.settle()
    until = int(sub["period_end"].timestamp()) + PERIOD
    await h.send(sub_paid(h, UID, payload, "late-renewal", first=False, until=until))
    await h.settle()
    assert await h.balance(UID) == 1 + 60  # they paid: what they paid for is theirs
    row = await sub_row(UID)
    assert (row["renews"], row["canceled_by"]) == (False, "bot")
    assert shop.texts(h, UID)[-1] == t(
        "en", "subscription_renewed_after_cancel", date=f"{row['period_end']:%Y-%m-%d}"
    )
    # Telegram is told again, with the first payment's charge id.
    edits = [(e.extra["charge_id"], e.extra["canceled"]) for e in sent(h, "edit_subscription")]
    assert edits == [("first-x", True), ("first-x", True)]


async def test_a_renewal_after_the_user_cancelled_in_telegram(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    payload = await subscribe(h, UID, "first-t")
    await h.send(ev.SubscriptionChanged(h.user(UID), "sub:9:1601", payload, "canceled"))
    await h.settle()
    await h.send(sub_paid(h, UID, payload, "late-t", first=False))
    await h.settle()
    assert await h.balance(UID) == 1 + 60
    row = await sub_row(UID)
    assert (row["renews"], row["canceled_by"]) == (False, "user")  # still theirs to turn on
    assert shop.texts(h, UID)[-1] == t(
        "en", "subscription_renewed_after_cancel", date=f"{row['period_end']:%Y-%m-%d}"
    )
    # The bot does not cancel for them: that would keep them from turning it back on.
    assert sent(h, "edit_subscription") == []


async def test_an_old_subscription_link_is_refused_at_checkout_with_where_to_get_one(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    payload = await subscribe_link(h, UID)
    await pool().execute("UPDATE orders SET expires_at = now() - interval '1 minute'")
    answer = await shop.pre_checkout(h, UID, payload, 900)
    assert answer.extra["ok"] is False and answer.text == t("en", "precheckout_plan_link_old")
    payload = await subscribe_link(h, UID)
    answer = await shop.pre_checkout(h, UID, payload, 500)  # not the link's price
    assert answer.text == t("en", "precheckout_plan_link_old")
    answer = await shop.pre_checkout(h, OTHER, payload, 900)  # not their link
    assert answer.text == t("en", "precheckout_unknown")


async def test_a_payment_for_a_plan_the_operator_removed(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    payload = await subscribe(h, UID, "first-g")
    pending = await subscribe_link(h, OTHER)  # a link made before the plan went away
    h.app.supervisor.ctx.plans.clear()  # PLANS changed (what a restart with new settings does)
    answer = await shop.pre_checkout(h, OTHER, pending, 900)
    assert answer.extra["ok"] is False and answer.text == t("en", "precheckout_plan_gone")
    await h.send(sub_paid(h, UID, payload, "renew-g", first=False))
    await h.settle()
    assert await h.balance(UID) == 1 + 60  # credited as sold
    assert shop.texts(h, UID)[-1] == t("en", "subscription_plan_gone", n=30)
    assert (await sub_row(UID))["renews"] is False
    assert [e.extra["charge_id"] for e in sent(h, "edit_subscription", UID)] == ["first-g"]
    # …and a payment of that removed plan's link that got through anyway.
    await h.send(sub_paid(h, OTHER, pending, "first-g2", first=True))
    await h.settle()
    assert await h.balance(OTHER) == 1 + 30
    assert (await sub_row(OTHER))["renews"] is False
    await h.command(UID, "subscription")
    await h.settle()
    assert shop.texts(h, UID)[-1].startswith("Your plan:")  # paid up to the period's end


async def test_a_subscription_payment_naming_nothing_we_know(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    await h.send(sub_paid(h, UID, "who-knows", "stray", 225, first=True))
    await h.settle()
    assert await h.balance(UID) == 1 + 5  # by its amount, as any purchase
    assert shop.texts(h, UID)[-1] == t("en", "subscription_plan_gone", n=5)
    assert [e.extra["canceled"] for e in sent(h, "edit_subscription", UID)] == [True]


async def test_one_subscription_at_a_time(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness(plans=PLANS + ",big:100:2500")
    await subscribe(h, UID, "first-1")
    await h.press(UID, "sub:plan:big")
    await h.settle()
    date = f"{(await sub_row(UID))['period_end']:%Y-%m-%d}"
    assert shop.texts(h, UID)[-1] == t("en", "subscription_already", date=date)
    assert len(sent(h, "create_invoice_link")) == 1


async def test_no_plans_no_subscriptions(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness()
    await h.command(UID, "subscription")
    await h.press(UID, "sub:plan:monthly")
    await h.settle()
    assert shop.texts(h, UID) == [t("en", "subscription_none_offered")]
    assert sent(h, "create_invoice_link") == []


class FailingImage:
    name = "failing"

    async def compose(self, photos: Sequence[bytes], prompt: str, style: str) -> ComposedImage:
        raise FinalError("refused", kind="moderation", user_reason="moderation")

    async def check(self) -> None:
        return None


async def test_expiring_plan_credits_are_spent_first_and_expire_at_renewal(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans="small:3:300", plan_unused_credits="expire")
    now = int(time.time())
    payload = await subscribe(h, UID, "first-e", 300, until=now + PERIOD)
    await shop.make_video(h, UID)  # a plan credit: 2 left of the plan, the free one untouched
    plan = await pool().fetchval("SELECT plan_credits FROM users WHERE telegram_id = $1", UID)
    assert (await h.balance(UID), plan) == (3, 2)
    await h.send(sub_paid(h, UID, payload, "renew-e", 300, first=False, until=now + 2 * PERIOD))
    await h.settle()
    assert await reasons(UID) == [
        ("free", 1),
        ("subscription", 3),
        ("generation", -1),
        ("plan_expired", -2),
        ("subscription", 3),
    ]
    assert await h.balance(UID) == 1 + 3 == await h.ledger_sum(UID)
    date = f"{(await sub_row(UID))['period_end']:%Y-%m-%d}"
    expired = t("en", "subscription_expired_note", n=2)
    assert shop.texts(h, UID)[-1] == t(
        "en", "subscription_renewed", n=3, date=date, balance=4, expired=expired
    )
    # The period lapses without renewal: the plan's credits go, the free one stays.
    await pool().execute(
        "UPDATE users SET plan_until = now() - interval '1 minute' WHERE telegram_id = $1", UID
    )
    h.app.supervisor.post(UID, Crash())  # the actor loads the user again
    await h.settle()
    await h.command(UID, "balance")
    await h.settle()
    assert shop.texts(h, UID)[-1] == t("en", "balance", n=1)
    notes = await pool().fetch(
        "SELECT note FROM ledger WHERE \"user\" = $1 AND reason = 'plan_expired' ORDER BY id", UID
    )
    assert ["new period" in notes[0]["note"], "without renewal" in notes[1]["note"]] == [True] * 2
    assert await h.balance(UID) == 1 == await h.ledger_sum(UID)


async def test_a_plan_credit_a_failed_video_gives_back_is_a_plan_credit_again(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans="small:3:300", plan_unused_credits="expire", image=FailingImage())
    await subscribe(h, UID, "first-f", 300)
    await h.make_video(UID)  # fails: refunded
    await h.settle()
    row = await pool().fetchrow(
        "SELECT balance, plan_credits FROM users WHERE telegram_id = $1", UID
    )
    assert (row["balance"], row["plan_credits"]) == (4, 3)
    assert await pool().fetchval("SELECT plan_charged FROM generations") == 1


async def test_carried_plan_credits_stay_and_the_ledger_says_so(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans="small:3:300")  # carry is the default
    now = int(time.time())
    payload = await subscribe(h, UID, "first-k", 300, until=now + PERIOD)
    await shop.make_video(h, UID)  # a plan credit (spent first): 2 of them left unused
    await h.send(sub_paid(h, UID, payload, "renew-k", 300, first=False, until=now + 2 * PERIOD))
    await h.settle()
    assert await h.balance(UID) == 1 + 3 - 1 + 3 == await h.ledger_sum(UID)
    assert [r for r, _ in await reasons(UID)] == [
        "free", "subscription", "generation", "subscription"
    ]  # fmt: skip
    note = await pool().fetchval(
        "SELECT note FROM ledger WHERE \"user\" = $1 AND reason = 'subscription' "
        "ORDER BY id DESC LIMIT 1",
        UID,
    )
    assert note.endswith("; 2 unused credit(s) of the period before carried over")
    carried = t("en", "subscription_carried_note", n=2)
    assert shop.texts(h, UID)[-1].startswith(carried)
    # Nothing lapses in carry mode, whatever the date.
    await pool().execute("UPDATE subscriptions SET period_end = now() - interval '1 day'")
    h.app.supervisor.post(UID, Crash())
    await h.settle()
    await h.command(UID, "balance")
    await h.settle()
    assert shop.texts(h, UID)[-1] == t("en", "balance", n=6)


async def test_refunding_a_subscription_charge_whose_credits_were_spent(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans="small:2:200", free_credits=0)
    await subscribe(h, UID, "first-r", 200)
    await shop.make_video(h, UID)  # one of the two spent
    await h.send(shop.refunded(h, UID, "first-r", 200))
    await h.send(shop.refunded(h, UID, "first-r", 200))  # and again
    await h.settle()
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID)  # never below zero
    last = (await pool().fetch('SELECT * FROM ledger WHERE "user" = $1 ORDER BY id', UID))[-1]
    assert (last["reason"], last["delta"]) == ("payment_refunded", -1)
    assert "1 credit(s) were already spent" in last["note"]
    assert shop.texts(h, UID)[-1] == t("en", "subscription_refunded", n=1, spent=1, balance=0)
    row = await sub_row(UID)
    assert (row["renews"], row["canceled_by"]) == (False, "bot")
    assert [(e.extra["charge_id"], e.extra["canceled"]) for e in sent(h, "edit_subscription")] == [
        ("first-r", True)
    ]


async def test_an_admin_refunds_a_renewal(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness(plans=PLANS, admin_ids=[OTHER])
    payload = await subscribe(h, UID, "first-a")
    await h.send(sub_paid(h, UID, payload, "renew-a", first=False,
                          until=int(time.time()) + 2 * PERIOD))  # fmt: skip
    await h.settle()
    await h.command(OTHER, "refund", "renew-a")
    await h.settle()
    assert "renew-a" in h.outbox.refunded
    assert await h.balance(UID) == 1 + 30
    assert (await sub_row(UID))["renews"] is False
    assert [e.extra["charge_id"] for e in sent(h, "edit_subscription")] == ["first-a"]
    assert shop.texts(h, OTHER)[-1] == t("en", "admin_refunded", charge="renew-a", n=30)


async def test_a_subscription_charge_only_telegram_knows_is_reconciled(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(plans=PLANS)
    payload = await subscribe_link(h, UID)
    date = int(time.time()) - 60
    tx = StarTransaction("lost-sub", UID, 900, payload, False, date, subscription_period=PERIOD)
    for _ in range(2):
        await h.app.reconcile([tx])
        await h.settle()
    assert await h.balance(UID) == 1 + 30
    row = await sub_row(UID)
    assert (row["plan"], row["charge_id"], int(row["period_end"].timestamp())) == (
        "monthly",
        "lost-sub",
        date + PERIOD,
    )
    assert await pool().fetchval("SELECT source FROM payments") == "reconcile"
