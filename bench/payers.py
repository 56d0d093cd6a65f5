"""Payers beside bench.engine's load: a pre-checkout query, then its payment, at a steady rate.

Each payer has a real pending order (made before the phase), so Flick checks the query against
it and answers yes, then credits the payment and thanks them. Measured per phase: how long each
pre-checkout waited for its answer (Telegram drops one unanswered after 10 s: "late"), how many
payments the database holds afterwards ("lost" = sent − credited), and how long the thanks took.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench.offline import inject
from flick.models import money, orders
from flick.payments.invoices import payload_for
from flick.testing.telegram import OfflineTelegram

PRE_CHECKOUT_DEADLINE = 10.0  # Telegram's
STARS = 50


@dataclass
class Payer:
    uid: int
    raw: Any
    payload: str


@dataclass
class PaymentFigures:
    pre_checkouts: int = 0
    pre_answers: list[float] = field(default_factory=list)  # seconds to the answer
    refused: int = 0
    payments: int = 0
    thanks: list[float] = field(default_factory=list)  # payment sent → thanks
    credited: int = 0

    @property
    def late(self) -> int:
        """Answered after Telegram's 10 s, or not at all."""
        on_time = sum(1 for s in self.pre_answers if s <= PRE_CHECKOUT_DEADLINE)
        return self.pre_checkouts - on_time

    @property
    def lost(self) -> int:
        return self.payments - self.credited


class Payers:
    def __init__(self, tg: OfflineTelegram, first_uid: int, count: int) -> None:
        self.tg = tg
        self.first_uid = first_uid
        self.count = count
        self.ready: list[Payer] = []
        self.chats: set[int] = set()
        self.figures = PaymentFigures()
        self._queries: dict[int, tuple[Payer, float]] = {}
        self._paid: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._phase_uids: list[int] = []

    async def prepare(self) -> None:
        """Users with a pending order each (through Flick's own data layer)."""
        for uid in range(self.first_uid, self.first_uid + self.count):
            await money.open_account(uid, None, f"Payer{uid}", "en", 1)
            order_id = await orders.create(uid, 1, STARS, 3600)
            raw = self.tg.user(uid, f"Payer{uid}", language_code="en")
            self.ready.append(Payer(uid, raw, payload_for(order_id)))
            self.chats.add(uid)

    async def run(self, rate: float, seconds: float) -> PaymentFigures:
        """Send pre-checkouts at `rate` for `seconds`; each yes is followed by its payment."""
        figures = self.figures = PaymentFigures()
        self._phase_uids = []
        start = time.perf_counter()
        n = 0
        while self.ready and (now := time.perf_counter()) - start < seconds:
            if now >= start + n / rate:
                payer = self.ready.pop()
                self._phase_uids.append(payer.uid)
                incoming = self.tg.pre_checkout(
                    payer.raw, payload=payer.payload, total_amount=STARS
                )
                self._queries[int(incoming.update.query_id)] = (payer, time.perf_counter())
                figures.pre_checkouts += 1
                await inject(self.tg, incoming)
                n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        return figures

    def on_pre_checkout(self, query_id: int, ok: bool, at: float) -> None:
        entry = self._queries.pop(query_id, None)
        if entry is None:
            return
        payer, sent = entry
        self.figures.pre_answers.append(at - sent)
        if not ok:
            self.figures.refused += 1
            return
        task = asyncio.create_task(self._pay(payer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pay(self, payer: Payer) -> None:
        self.figures.payments += 1
        self._paid[payer.uid] = time.perf_counter()
        await inject(self.tg, self.tg.payment(payer.raw, payload=payer.payload, total_amount=STARS))

    def on_reply(self, chat: int, at: float) -> None:
        sent = self._paid.pop(chat, None)
        if sent is not None:
            self.figures.thanks.append(at - sent)

    async def settle(self, database_url: str, within: float = 15.0) -> PaymentFigures:
        """Wait for the answers still due (up to `within` s), then count what was credited."""
        for _ in range(int(within / 0.05)):  # a bench polling its own counters
            if not (self._queries or self._paid or self._tasks):
                break
            await asyncio.sleep(0.05)
        conn = await asyncpg.connect(database_url)
        try:
            uids = self._phase_uids
            self.figures.credited = await conn.fetchval(
                'SELECT count(*) FROM payments WHERE "user" = ANY($1::bigint[])', uids
            )
        finally:
            await conn.close()
        return self.figures


__all__ = ["Payers", "PaymentFigures"]
