"""A shopper's moves against an EngineHarness: the `shop` fixture of tests/payments.

Payments go through the engine exactly as the Telegram adapter delivers them: PreCheckout,
PaymentSucceeded and PaymentRefunded events (flick.events) into the user's actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flick import events as ev
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.memory import Sent


@dataclass(frozen=True)
class Money:
    """Everything the database says about one user's money."""

    balance: int | None
    ledger: list[dict[str, Any]]
    reasons: list[str]
    ledger_sum: int
    payments: list[dict[str, Any]]
    orders: list[dict[str, Any]]


async def buy(h: EngineHarness, uid: int, index: int = 0) -> Sent:
    """Press `buy:<index>`; returns the invoice the bot sent."""
    before = len(h.outbox.sent)
    await h.press(uid, f"buy:{index}")
    await h.settle()
    invoices = [s for s in h.outbox.sent[before:] if s.method == "send_invoice"]
    assert len(invoices) == 1, invoices
    return invoices[0]


def answers_to(h: EngineHarness, query_id: str) -> list[Sent]:
    return [
        s
        for s in h.outbox.sent
        if s.method == "answer_pre_checkout" and s.extra["query_id"] == query_id
    ]


async def pre_checkout(
    h: EngineHarness, uid: int, payload: str, amount: int, currency: str = "XTR"
) -> Sent:
    """Send a pre-checkout query and return the bot's one answer to it."""
    query_id = h.next_id("q")
    await h.send(ev.PreCheckout(h.user(uid), h.next_id(), query_id, currency, amount, payload))
    await h.settle(generations=False)
    found = answers_to(h, query_id)
    assert len(found) == 1, f"query {query_id} answered {len(found)} times"
    return found[0]


def paid(
    h: EngineHarness, uid: int, payload: str, charge: str, amount: int, currency: str = "XTR"
) -> ev.PaymentSucceeded:
    return ev.PaymentSucceeded(
        h.user(uid), h.next_id(), charge, f"provider-{charge}", currency, amount, payload
    )


def refunded(h: EngineHarness, uid: int, charge: str, amount: int = 0) -> ev.PaymentRefunded:
    return ev.PaymentRefunded(
        h.user(uid), h.next_id(), charge, f"provider-{charge}", "XTR", amount, None
    )


async def pay(
    h: EngineHarness, uid: int, payload: str, charge: str, amount: int
) -> ev.PaymentSucceeded:
    event = paid(h, uid, payload, charge, amount)
    await h.send(event)
    await h.settle(generations=False)
    return event


async def money(uid: int) -> Money:
    balance = await pool().fetchval("SELECT balance FROM users WHERE telegram_id = $1", uid)
    ledger = await pool().fetch('SELECT * FROM ledger WHERE "user" = $1 ORDER BY id', uid)
    payments = await pool().fetch('SELECT * FROM payments WHERE "user" = $1 ORDER BY id', uid)
    orders = await pool().fetch('SELECT * FROM orders WHERE "user" = $1', uid)
    return Money(
        balance=balance,
        ledger=[dict(r) for r in ledger],
        reasons=[r["reason"] for r in ledger],
        ledger_sum=sum(r["delta"] for r in ledger),
        payments=[dict(r) for r in payments],
        orders=[dict(r) for r in orders],
    )


def texts(h: EngineHarness, uid: int) -> list[str]:
    return [s.text for s in h.outbox.to(uid) if s.method == "send_text"]


async def make_video(h: EngineHarness, uid: int) -> None:
    """Spend one credit on a video (the whole conversation, consent included)."""
    before = len([s for s in h.outbox.to(uid) if s.method == "send_video"])
    await h.make_video(uid)
    after = len([s for s in h.outbox.to(uid) if s.method == "send_video"])
    assert after == before + 1


class Shop:
    """The `shop` fixture: the functions above under the names the tests use."""

    buy = staticmethod(buy)
    pre_checkout = staticmethod(pre_checkout)
    answers_to = staticmethod(answers_to)
    paid = staticmethod(paid)
    pay = staticmethod(pay)
    refunded = staticmethod(refunded)
    money = staticmethod(money)
    texts = staticmethod(texts)
    make_video = staticmethod(make_video)
