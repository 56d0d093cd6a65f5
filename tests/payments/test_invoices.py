"""Buying: a package button makes an order and a Stars invoice priced from the server's table;
pre-checkout admits only a pending, unexpired order of this user at its exact price."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flick import events as ev
from flick.i18n import t
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.harnesses import HarnessFactory
from flick.testing.shop import Shop
from flick.testing.waits import until

UID = 901
OTHER = 902


async def test_buy_press_creates_an_order_and_an_invoice(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    packages = h.app.supervisor.ctx.packages
    for package in packages:
        started = datetime.now(UTC)
        invoice = await shop.buy(h, UID, package.index)
        assert invoice.chat_id == UID
        assert invoice.extra["currency"] == "XTR"
        assert invoice.extra["amount"] == package.stars
        assert invoice.text == t("en", "package_title", n=package.credits)
        assert invoice.extra["description"] == t("en", "invoice_description", n=package.credits)
        prefix, _, order_id = invoice.extra["payload"].partition(":")
        assert prefix == "order"
        order = await pool().fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(order_id))
        assert order["user"] == UID and order["status"] == "pending"
        assert (order["package_credits"], order["stars"]) == (package.credits, package.stars)
        ttl = timedelta(seconds=h.settings.order_ttl_seconds)
        assert started + ttl - timedelta(seconds=5) < order["expires_at"]
        assert order["expires_at"] < datetime.now(UTC) + ttl + timedelta(seconds=5)
    assert await pool().fetchval("SELECT count(*) FROM orders") == len(packages)
    # Buying moves no money by itself.
    money = await shop.money(UID)
    assert money.balance == 1 and money.reasons == ["free"] and money.payments == []


async def test_prices_come_from_the_configured_package_table(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(packages="2:100,7:300")
    await h.command(UID, "buy")
    await h.settle()
    offer = h.outbox.to(UID)[-1]
    assert [d for _, d in offer.buttons()] == ["buy:0", "buy:1"]
    assert offer.buttons()[1][0] == t("en", "package_button", credits=7, stars=300)
    invoice = await shop.buy(h, UID, 1)
    assert invoice.extra["amount"] == 300
    assert await pool().fetchval("SELECT package_credits FROM orders") == 7


@pytest.mark.parametrize(
    "arg",
    ["99", "4", "-1", "abc", "1.5", " 1", "0x1", "1000", "²"],
)
async def test_a_made_up_package_is_refused_without_an_order(
    harness: HarnessFactory, shop: Shop, arg: str
) -> None:
    h = await harness()
    press = await h.press(UID, f"buy:{arg}")
    await h.settle()
    replies = [s for s in h.outbox.sent if s.extra.get("callback_id") == press.callback_id]
    assert [(s.text) for s in replies] == [t("en", "button_stale")]
    assert await pool().fetchval("SELECT count(*) FROM orders") == 0
    assert [s for s in h.outbox.sent if s.method == "send_invoice"] == []
    assert h.app.supervisor.crashes == 0


# ---- pre-checkout ------------------------------------------------------------------------------
async def test_pre_checkout_accepts_a_valid_order(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 1)
    answer = await shop.pre_checkout(h, UID, invoice.extra["payload"], invoice.extra["amount"])
    assert answer.extra["ok"] is True and answer.text == ""
    # Pre-checkout credits nothing: the money moves on the successful payment only.
    money = await shop.money(UID)
    assert money.balance == 1 and money.payments == []
    assert money.orders[0]["status"] == "pending"


async def refused(
    h: EngineHarness, shop: Shop, uid: int, payload: str, amount: int, currency: str = "XTR"
) -> str:
    answer = await shop.pre_checkout(h, uid, payload, amount, currency)
    assert answer.extra["ok"] is False
    return answer.text


@pytest.mark.parametrize(
    "payload",
    ["", "order:", "order:not-a-uuid", f"order:{uuid.UUID(int=0)}", "hello", "order:" + "9" * 300],
)
async def test_pre_checkout_refuses_an_unknown_order(
    harness: HarnessFactory, shop: Shop, payload: str
) -> None:
    h = await harness()
    await shop.buy(h, UID, 0)
    assert await refused(h, shop, UID, payload, 50) == t("en", "precheckout_unknown")


async def test_pre_checkout_refuses_another_users_order(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    theirs = await shop.buy(h, OTHER, 0)
    text = await refused(h, shop, UID, theirs.extra["payload"], theirs.extra["amount"])
    assert text == t("en", "precheckout_unknown")
    # ...and the owner can still pay it.
    answer = await shop.pre_checkout(h, OTHER, theirs.extra["payload"], theirs.extra["amount"])
    assert answer.extra["ok"] is True


async def test_pre_checkout_refuses_an_already_paid_order(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 0)
    payload, amount = invoice.extra["payload"], invoice.extra["amount"]
    await shop.pay(h, UID, payload, "charge-paid-1", amount)
    assert await refused(h, shop, UID, payload, amount) == t("en", "precheckout_paid")


async def test_pre_checkout_refuses_an_expired_order(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 0)
    await pool().execute("UPDATE orders SET expires_at = now() - interval '1 second'")
    text = await refused(h, shop, UID, invoice.extra["payload"], invoice.extra["amount"])
    assert text == t("en", "precheckout_expired")


@pytest.mark.parametrize(
    ("amount_delta", "currency"), [(-1, "XTR"), (+1, "XTR"), (0, "USD"), (0, "xtr"), (0, "")]
)
async def test_pre_checkout_refuses_a_wrong_amount_or_currency(
    harness: HarnessFactory, shop: Shop, amount_delta: int, currency: str
) -> None:
    h = await harness()
    invoice = await shop.buy(h, UID, 2)
    text = await refused(
        h, shop, UID, invoice.extra["payload"], invoice.extra["amount"] + amount_delta, currency
    )
    assert text == t("en", "precheckout_mismatch")


async def test_pre_checkout_refusal_speaks_the_users_language(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    await h.command(UID, "language")
    await h.settle()
    await h.press(UID, "lang:ru", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    assert await refused(h, shop, UID, "order:nope", 50) == t("ru", "precheckout_unknown")


async def test_every_pre_checkout_query_is_answered_exactly_once(
    harness: HarnessFactory, shop: Shop
) -> None:
    """A burst of queries, good and bad, some delivered twice: one answer per query id."""
    h = await harness()
    good = await shop.buy(h, UID, 0)
    other = await shop.buy(h, OTHER, 1)
    queries = []
    cases = [
        (UID, good.extra["payload"], 50, "XTR"),
        (UID, good.extra["payload"], 49, "XTR"),
        (UID, other.extra["payload"], 225, "XTR"),
        (UID, "junk", 50, "XTR"),
        (OTHER, other.extra["payload"], 225, "XTR"),
        (OTHER, other.extra["payload"], 225, "EUR"),
    ] * 3
    for uid, payload, amount, currency in cases:
        query = ev.PreCheckout(h.user(uid), h.next_id(), h.next_id("q"), currency, amount, payload)
        queries.append(query)
        await h.send(query)
        await h.send(query)  # the same update twice
    await h.settle()
    for query in queries:
        assert len(shop.answers_to(h, query.query_id)) == 1, query
    oks = [shop.answers_to(h, q.query_id)[0].extra["ok"] for q in queries]
    assert oks == [True, False, False, False, True, False] * 3


async def test_pre_checkout_is_answered_while_a_video_renders(
    harness: HarnessFactory, shop: Shop, tmp_path: Path
) -> None:
    """The answer does not wait for the user's generation (Telegram gives 10 seconds)."""
    from flick.pipeline.local import LocalVideoProvider

    slow = LocalVideoProvider(tmp_path / "slow", latency=30, duration=0.25, fps=4, width=64)
    h = await harness(video=slow)
    invoice = await shop.buy(h, UID, 0)
    await h.command(UID, "create")
    await h.settle()
    await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    await h.pick_style(UID)
    await h.settle()
    await h.photo(UID)
    await h.photo(UID)
    await h.settle(generations=False)

    async def rendering() -> bool:  # taken from the queue
        return h.app.supervisor.generations_running == 1

    await until(rendering, "the generation is rendering")
    answer = await shop.pre_checkout(h, UID, invoice.extra["payload"], 50)
    assert answer.extra["ok"] is True
    assert h.app.supervisor.generations_running == 1  # still rendering
