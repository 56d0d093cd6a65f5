"""Overload, driven deterministically: every admission slot held by an actor whose reply is held.

With ADMISSION_SLOTS=2 and the replies to two users held at the outbox, those two actors keep
both slots, so every other user's update has to wait (flick/actors/admission.py). Meanwhile:
payments and pre-checkout queries are still answered and credited; the users who wait are
told "lots of people right now" (once); and once the slots free up, every waiting update is
answered, exactly once, in order. Nothing is dropped and nothing is handled twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flick import events as ev
from flick.i18n import t
from flick.models.db import pool
from flick.ports import Keyboard
from flick.testing.engine import EngineHarness
from flick.testing.memory import RecordingOutbox
from flick.testing.waits import until

HELD = (501, 502)  # their actors hold both slots
WAITING = tuple(range(600, 606))  # new users who arrive while the slots are held
PAYER = 700


class HeldReplies(RecordingOutbox):
    """The recording outbox, where a test can hold the messages to chosen chats."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[int, asyncio.Event] = {}
        self.holding: set[int] = set()  # chats with a message stopped at the gate

    async def send_text(self, chat_id: int, text: str, keyboard: Keyboard | None = None) -> int:
        gate = self.gates.get(chat_id)
        if gate is not None and not gate.is_set():
            self.holding.add(chat_id)
            await gate.wait()
        return await super().send_text(chat_id, text, keyboard)


def texts(h: EngineHarness, uid: int) -> list[str]:
    return [s.text for s in h.outbox.to(uid) if s.method == "send_text"]


async def overloaded(
    harness: Callable[..., Awaitable[EngineHarness]],
) -> tuple[EngineHarness, HeldReplies, str]:
    """An engine whose two slots are both held, and a payer with an invoice to pay."""
    outbox = HeldReplies()
    h = await harness(
        outbox=outbox, admission_slots=2, defer_after_seconds=0.05, busy_notices_per_second=100
    )
    await h.command(PAYER, "start")
    await h.settle()
    await h.press(PAYER, "buy:0")
    await h.settle()
    invoice = next(s for s in outbox.sent if s.method == "send_invoice")
    for uid in HELD:
        outbox.gates[uid] = asyncio.Event()
        await h.command(uid, "start")
    await until(lambda: outbox.holding == set(HELD), "both slots held by a held reply")
    # Each new user's row write keeps a slot until it lands (Admission.extend): then two.
    admission = h.app.supervisor.admission
    await until(lambda: admission.busy == 2, "the held users' row writes landed")
    return h, outbox, str(invoice.extra["payload"])


async def test_a_payment_is_answered_and_credited_while_every_slot_is_held(
    harness: Callable[..., Awaitable[EngineHarness]],
) -> None:
    h, outbox, payload = await overloaded(harness)
    for uid in WAITING:
        await h.command(uid, "start")
    admission = h.app.supervisor.admission
    await until(lambda: admission.waiting == len(WAITING), "the new users wait for a slot")

    query = ev.PreCheckout(h.user(PAYER), h.next_id(), "q-overload", "XTR", 50, payload)
    await h.send(query)
    await until(
        lambda: any(s.method == "answer_pre_checkout" for s in outbox.sent), "pre-checkout answered"
    )
    answers = [s for s in outbox.sent if s.method == "answer_pre_checkout"]
    assert [(a.extra["query_id"], a.extra["ok"]) for a in answers] == [("q-overload", True)]

    charge = ev.PaymentSucceeded(h.user(PAYER), h.next_id(), "ch-1", "p-1", "XTR", 50, payload)
    await h.send(charge)

    async def credited() -> bool:
        return bool(await h.balance(PAYER) == 2)  # the free credit and the one bought

    await until(credited, "the payment credited while the slots are held")
    # Still overloaded: the held users and the waiting ones are where they were.
    assert admission.busy >= 2
    assert admission.waiting == len(WAITING)
    assert all(texts(h, uid) in ([], [t("en", "busy_now")]) for uid in WAITING)
    for gate in outbox.gates.values():
        gate.set()
    await h.settle()
    assert await pool().fetchval('SELECT count(*) FROM payments WHERE "user" = $1', PAYER) == 1


async def test_users_who_wait_out_a_surge_are_told_once_then_answered_once(
    harness: Callable[..., Awaitable[EngineHarness]],
) -> None:
    h, outbox, _ = await overloaded(harness)
    for uid in WAITING:
        await h.command(uid, "start")
        await h.command(uid, "balance")
    notice = t("en", "busy_now")
    await until(
        lambda: all(texts(h, uid) == [notice] for uid in WAITING),
        "every waiting user told to wait",
    )
    assert h.app.supervisor.admission.stats.told == len(WAITING)

    for gate in outbox.gates.values():
        gate.set()
    await h.settle()
    for uid in (*HELD, *WAITING):
        told = [notice] if uid in WAITING else []
        assert texts(h, uid)[: len(told)] == told, uid
        welcome = t("en", "welcome", name=f"User{uid}", n=1, price=50)
        expected = [welcome] if uid in HELD else [welcome, t("en", "balance", n=1)]
        assert texts(h, uid)[len(told) :] == expected, uid
    # Each update handled once: one free credit each, one journal row per update.
    users = [*HELD, *WAITING]
    balances = await pool().fetch(
        "SELECT balance FROM users WHERE telegram_id = ANY($1::bigint[])", users
    )
    assert sorted(r["balance"] for r in balances) == [1] * len(users)
    once_each = {uid: 1 if uid in HELD else 2 for uid in users}

    async def journalled() -> dict[int, int]:
        rows = await pool().fetch(
            'SELECT "user", count(*) AS n FROM handled_updates '
            'WHERE "user" = ANY($1::bigint[]) GROUP BY "user"',
            users,
        )
        return {r["user"]: r["n"] for r in rows}

    async def all_journalled() -> bool:  # the journal writes in batches, in the background
        return await journalled() == once_each

    await until(all_journalled, "every update journalled as handled, once")
    await h.app.supervisor.journal.flush()
    assert await journalled() == once_each
