"""The fault campaign's users: each wants a few videos, runs out of credits, pays, sometimes
gives up and /cancels, and otherwise behaves as people do when a bot is slow or restarts (they
write again). What they do goes to Flick as updates through the campaign's Telegram."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.faults import Campaign

PACKAGES = ((1, 50), (5, 225), (10, 400), (25, 875))  # Flick's default price list
STYLES = ("romantic", "hug", "kiss", "dance")


@dataclass
class Charge:
    uid: int
    payload: str
    stars: int
    credits: int  # what the order promised


@dataclass
class User:
    uid: int
    target: int
    done: int = 0
    generations: set[int] = field(default_factory=set)
    canceled: int = 0
    purchases: int = 0


@dataclass
class Tally:
    stuck_seen: list[tuple[int, int | None]] = field(default_factory=list)
    cancel_said_refunded: int = 0  # "your credit is back" after /cancel of a finished video
    duplicates_sent: int = 0  # payments delivered twice at once
    redelivered: Counter[str] = field(default_factory=Counter)  # by kind, after restarts
    redelivered_updates: set[int] = field(default_factory=set)  # distinct ones (Update.n)
    late: int = 0  # updates sent while Flick was down, delivered when it came back
    precheckout_refused: int = 0
    precheckout_unanswered: int = 0


class People:
    def __init__(self, campaign: Campaign) -> None:
        self.c = campaign
        self.args = campaign.args
        self.rng = campaign.rng
        self.tg = campaign.tg

    @property
    def db(self) -> Any:
        assert self.c.db is not None
        return self.c.db

    async def look(self, uid: int) -> tuple[int | None, str | None, dict[str, Any]]:
        row = await self.db.fetchrow(
            "SELECT u.balance, s.state, s.data FROM users u LEFT JOIN user_sessions s "
            'ON s."user" = u.telegram_id WHERE u.telegram_id = $1',
            uid,
        )
        if row is None:
            return None, None, {}
        data = json.loads(row["data"]) if row["data"] else {}
        return row["balance"], row["state"], data

    async def until(
        self, check: Callable[[], Awaitable[Any]], seconds: float, step: float = 0.05
    ) -> Any:
        return await self.c.until(check, seconds, step)

    # ---- a user's life ----------------------------------------------------------------------
    async def life(self, u: User) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while u.done < u.target and not self.c.closing:
                await self.c.alive.wait()
                await self.step(u)

    async def step(self, u: User) -> None:
        balance, state, data = await self.look(u.uid)
        uid, tg, send = u.uid, self.tg, self.c.send

        async def state_is_not(old: str | None) -> bool:
            return (await self.look(uid))[1] != old

        if balance is None:
            await send(tg.command(uid, "start"))
            await self.until(lambda: self._exists(uid), 5)
        elif state == "processing":
            await self.follow_generation(u, data.get("generation_id"))
        elif balance < 1:
            await self.buy(u)
        elif state in (None, "idle"):
            await send(tg.command(uid, "create"))
            await self.until(lambda: state_is_not(state), 5)
        elif state == "consent":
            await send(tg.tap(uid, "consent", None))
            await self.until(lambda: state_is_not(state), 5)
        elif state == "choosing_style":
            style = self.rng.choice(STYLES)
            await send(tg.tap(uid, f"style:{style}", data.get("picker_message_id")))
            await self.until(lambda: state_is_not(state), 5)
        elif state == "waiting_for_photos":
            have = len(data.get("photos") or [])

            async def moved() -> bool:
                _, now, d = await self.look(uid)
                return now != state or len(d.get("photos") or []) != have

            await send(tg.photo(uid))
            await self.until(moved, 6)
        else:
            await asyncio.sleep(0.2)

    async def _exists(self, uid: int) -> bool:
        return (await self.look(uid))[0] is not None

    async def follow_generation(self, u: User, gen_id: int | None) -> None:
        """Wait for the video (or the refund); now and then the user gives up and /cancels."""
        db, tg = self.db, self.tg
        if gen_id is not None:
            u.generations.add(gen_id)
            if self.rng.random() < self.args.cancel_rate and self.c.alive.is_set():
                await asyncio.sleep(self.rng.uniform(0.1, 1.5))
                await self.c.send(tg.command(u.uid, "cancel"))
                u.canceled += 1

            async def ended() -> Any:
                return await db.fetchrow(
                    "SELECT status, refunded FROM generations WHERE id = $1 "
                    "AND (status = 'done' OR refunded)",
                    gen_id,
                )

            row = await self.until(ended, self.args.generation_patience, step=0.1)
            if row is not None and row["status"] == "done":
                u.done += 1

        async def left_processing() -> bool:
            return (await self.look(u.uid))[1] != "processing"

        if await self.until(left_processing, self.args.stuck_grace / 2, step=0.1):
            return
        # Nothing moves on its own (the bot may have been restarted since): the user writes,
        # which wakes their actor, and looks again.
        await self.c.send(tg.command(u.uid, "balance"))
        if not await self.until(left_processing, self.args.stuck_grace / 2, step=0.1):
            # Their video is over (or never existed) and the bot still says "busy": stuck.
            self.c.tally.stuck_seen.append((u.uid, gen_id))
            await self.c.send(tg.command(u.uid, "cancel"))
            await self.until(left_processing, 5)
            if any("credit is back" in t for t in tg.last_texts(u.uid, 2)):
                self.c.tally.cancel_said_refunded += 1

    async def buy(self, u: User) -> None:
        db, uid, tg, tally = self.db, u.uid, self.tg, self.c.tally
        index = self.rng.choices(range(len(PACKAGES)), weights=(5, 3, 1, 1))[0]
        since = await db.fetchval("SELECT now()")
        await self.c.send(tg.tap(uid, f"buy:{index}", None))

        async def new_order() -> Any:
            return await db.fetchrow(
                'SELECT id, stars, package_credits FROM orders WHERE "user" = $1 '
                "AND status = 'pending' AND created_at >= $2 ORDER BY created_at DESC LIMIT 1",
                uid,
                since,
            )

        order = await self.until(new_order, 5)
        if order is None:
            return
        payload = f"order:{order['id']}"
        update, answer = tg.precheckout(uid, payload, order["stars"])
        await self.c.send(update)
        try:
            ok = await asyncio.wait_for(answer, 5)
        except TimeoutError:
            tg.prechecks.pop(int(update.op["qid"]), None)
            tally.precheckout_unanswered += 1
            return  # Telegram would cancel the payment: no money moved; they try again
        if not ok:
            tally.precheckout_refused += 1
            return
        charge_id = f"stxBench{uid}x{u.purchases}x{self.rng.randrange(1 << 30)}"
        u.purchases += 1
        self.c.charges[charge_id] = Charge(uid, payload, order["stars"], order["package_credits"])
        paid = tg.payment(uid, payload, order["stars"], charge_id)
        await self.c.send(paid)
        if self.rng.random() < self.args.duplicate_rate:
            tally.duplicates_sent += 1
            await self.c.send(paid)  # the same update twice at once, as after a reconnect

        async def credited() -> Any:
            return await db.fetchval(
                "SELECT 1 FROM payments WHERE telegram_payment_charge_id = $1", charge_id
            )

        await self.until(credited, 30)
