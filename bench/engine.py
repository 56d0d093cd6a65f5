"""Engine throughput and latency: raw Telegram updates → kurigram → the whole engine → replies.

Synthetic users walk a script of private-chat updates (commands, a consent tap, a style tap, a
small real JPEG, /balance), pushed through kurigram's `Client.handle_updates` into Flick (real
PostgreSQL, real SeaweedFS); every step is answered by exactly one message, caught by the offline
Telegram. Measured: updates/s and update→reply latency at a fixed offered rate, and at saturation.
The same updates then go through a bare kurigram bot whose handler makes one asyncpg round trip
of the kind Flick makes for that step (a write where Flick writes) and replies; Flick/baseline is
their ratio at saturation.

    .venv/bin/python -m bench.engine                 # ~3 minutes
    .venv/bin/python -m bench.engine --seconds 60    # longer phases
    .venv/bin/python -m bench.engine --profile /tmp/prof

Targets: ≥ 3,000 updates/s at saturation, p99 < 20 ms at 1,000/s, Flick/baseline ≥ 0.7.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pyrogram import Client, types
from pyrogram.handlers import CallbackQueryHandler, MessageHandler

from bench.common import (
    GcClock,
    Report,
    Services,
    add_common_args,
    bench_settings,
    flick_on_offline_telegram,
    header,
    jpeg,
    profiled,
    quiet_logging,
    run,
    services,
    summarize,
)
from bench.offline import ReplyTap, inject, use_lean_lookups
from flick.app import Flick
from flick.pipeline.local import LocalImageProvider, LocalVideoProvider
from flick.runtime import settle_heap
from flick.testing.telegram import Incoming, OfflineTelegram

# One user's walk through the bot; each step is answered by exactly one message to their chat.
SCRIPT = ("start", "balance", "create", "consent", "style", "photo", "balance", "help")
TARGET_SATURATION = 3000.0
TARGET_P99_MS = 20.0
TARGET_RATIO = 0.7


# ---- the users ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Person:
    uid: int
    raw: Any
    step: int = 0
    last_message: int | None = None  # the bot's last message to them: the one a button is under


class Workload:
    """Makes users and the raw update for each one's next step."""

    def __init__(self, tg: OfflineTelegram, first_uid: int) -> None:
        self.tg = tg
        self.next_uid = first_uid
        # A few distinct small photos (about 2 KB each), with their sizes known up front.
        self.photos = [(jpeg((40 * i, 90, 200 - 30 * i)), (320, 400)) for i in range(4)]

    def fresh(self) -> Person:
        uid = self.next_uid
        self.next_uid += 1
        return Person(uid, self.tg.user(uid, f"User{uid}", language_code="en"))

    def incoming(self, p: Person) -> Incoming:
        kind = SCRIPT[p.step]
        tg = self.tg
        if kind == "consent":
            return tg.callback(p.raw, "consent", message_id=p.last_message or 1)
        if kind == "style":
            return tg.callback(p.raw, "style:hug", message_id=p.last_message or 1)
        if kind == "photo":
            data, size = self.photos[p.uid % len(self.photos)]
            return tg.photo(p.raw, data, size=size)
        return tg.command(p.raw, kind)


# ---- the load generator ------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    # (intended send time, reply time, step kind) of each answered update
    records: list[tuple[float, float, str]] = field(default_factory=list)
    started: float = 0.0
    measured_from: float = 0.0
    ended: float = 0.0
    sent: int = 0
    unanswered: int = 0
    late_sends: float = 0.0  # how far the generator itself fell behind its schedule (s, max)

    def measured(self) -> list[tuple[float, float, str]]:
        return [r for r in self.records if r[0] >= self.measured_from]

    def throughput(self) -> float:
        """Replies per second that arrived inside the measured window."""
        done = [r for r in self.records if self.measured_from <= r[1] <= self.ended]
        span = self.ended - self.measured_from
        return len(done) / span if span > 0 else 0.0

    def latencies(self, kind: str | None = None) -> list[float]:
        return [d - s for s, d, k in self.measured() if kind is None or k == kind]


class Driver:
    """Open loop across users (a fixed rate) or closed with a window (saturation); each user is
    closed-loop: their next step goes out after the bot answered the last one, as a person does."""

    def __init__(self, tg: OfflineTelegram, workload: Workload, tap: ReplyTap) -> None:
        self.tg = tg
        self.workload = workload
        self.ready: deque[Person] = deque()
        self.waiting: dict[int, tuple[Person, float, str]] = {}
        self.phase = Phase("idle")
        self.unexpected = 0
        self.answered = asyncio.Event()
        tap.on_reply = self._reply

    def _reply(self, chat: int, message_id: int | None, at: float) -> None:
        entry = self.waiting.pop(chat, None)
        if entry is None:
            self.unexpected += 1  # a message nobody's step asked for
            return
        person, sent, kind = entry
        self.phase.records.append((sent, at, kind))
        person.last_message = message_id
        person.step += 1
        if person.step < len(SCRIPT):
            self.ready.append(person)
        self.answered.set()

    async def _send(self, intended: float) -> None:
        person = self.ready.popleft() if self.ready else self.workload.fresh()
        self.waiting[person.uid] = (person, intended, SCRIPT[person.step])
        self.phase.sent += 1
        await inject(self.tg, self.workload.incoming(person))

    async def fixed_rate(self, name: str, rate: float, warmup: float, seconds: float) -> Phase:
        phase = self.phase = Phase(name)
        start = phase.started = time.perf_counter()
        phase.measured_from = start + warmup
        end = phase.measured_from + seconds
        n = 0
        while (now := time.perf_counter()) < end:
            due = min(int((now - start) * rate) + 1, int((end - start) * rate))
            while n < due:
                intended = start + n / rate
                phase.late_sends = max(phase.late_sends, time.perf_counter() - intended)
                await self._send(intended)
                n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        phase.ended = end
        await self._drain(phase)
        return phase

    async def saturate(self, name: str, window: int, warmup: float, seconds: float) -> Phase:
        phase = self.phase = Phase(name)
        start = phase.started = time.perf_counter()
        phase.measured_from = start + warmup
        end = phase.measured_from + seconds
        while time.perf_counter() < end:
            while len(self.waiting) < window:
                await self._send(time.perf_counter())
            self.answered.clear()
            try:
                await asyncio.wait_for(self.answered.wait(), 5.0)
            except TimeoutError:
                break  # nothing answers any more: report what there is
        phase.ended = time.perf_counter()
        await self._drain(phase)
        return phase

    async def _drain(self, phase: Phase, limit: float = 15.0) -> None:
        deadline = time.perf_counter() + limit
        while self.waiting and (left := deadline - time.perf_counter()) > 0:
            self.answered.clear()
            try:
                await asyncio.wait_for(self.answered.wait(), left)
            except TimeoutError:
                break
        phase.unanswered = len(self.waiting)
        # Users still waiting are dropped, so the next phase starts clean.
        self.waiting.clear()


# ---- the two bots ------------------------------------------------------------------------------
@asynccontextmanager
async def flick_bot(svc: Services, tg: OfflineTelegram, pool_max: int) -> AsyncIterator[Flick]:
    """Flick as `flick run` wires it (gateway: adapter + outbox), on the offline client."""
    data_dir = svc.tmp / "flick"
    # SEND_RATE: the outbox's global pacing (30/s by default, Telegram's broadcast limit) would
    # measure the pacing, not the engine; the offline Telegram takes any rate.
    settings = bench_settings(data_dir, send_rate=1e9, db_pool_max=pool_max)
    async with flick_on_offline_telegram(
        svc,
        tg.client,
        settings,
        image=LocalImageProvider(),
        video=LocalVideoProvider(data_dir / "videos"),
    ) as app:
        yield app


@asynccontextmanager
async def baseline_bot(svc: Services, tg: OfflineTelegram, pool_size: int) -> AsyncIterator[None]:
    """A bare kurigram bot: per update one asyncpg round trip of the kind Flick makes for that
    step (none when pool_size is 0), then the reply (a callback is answered too, as Flick
    answers it). Handlers run in kurigram's worker, as a plain bot's do."""
    pool = None
    if pool_size:
        pool = await asyncpg.create_pool(svc.database_url, min_size=pool_size, max_size=pool_size)
    no_preview = types.LinkPreviewOptions(is_disabled=True)

    async def round_trip(user_id: int, writes: str | None) -> int | None:
        """The kind of statement Flick runs for this step: a write where Flick writes (a commit
        waits for the WAL), a read elsewhere. A baseline that only reads would measure fsync."""
        if pool is None:
            return 1
        if writes == "user":  # /start: Flick upserts the user (one statement)
            return await pool.fetchval(  # type: ignore[no-any-return]
                "INSERT INTO users (telegram_id, balance) VALUES ($1, 1) ON CONFLICT "
                "(telegram_id) DO UPDATE SET last_seen_at = now() RETURNING balance",
                user_id,
            )
        if writes == "session":  # a conversation step: Flick saves the session
            await pool.execute(
                'INSERT INTO user_sessions ("user", state, data, updated_at) '
                "VALUES ($1, 'step', '{}', now()) ON CONFLICT (\"user\") DO UPDATE SET "
                "state = EXCLUDED.state, data = EXCLUDED.data, updated_at = now()",
                user_id,
            )
            return 1
        balance: int | None = await pool.fetchval(
            "SELECT balance FROM users WHERE telegram_id = $1", user_id
        )
        return balance

    async def on_message(client: Client, message: types.Message) -> None:
        user_id = message.from_user.id if message.from_user else 0
        text = message.text or ""
        writes = (
            "user"
            if text.startswith("/start")
            else "session"
            if message.photo or text.startswith("/create")
            else None
        )
        balance = await round_trip(user_id, writes)
        chat_id = message.chat.id if message.chat and message.chat.id else user_id
        await client.send_message(
            chat_id, f"Your balance: {balance}", link_preview_options=no_preview
        )

    async def on_callback(client: Client, query: types.CallbackQuery) -> None:
        balance = await round_trip(query.from_user.id, "session")  # consent, style: saved
        await client.answer_callback_query(query.id)
        await client.send_message(
            query.from_user.id, f"Your balance: {balance}", link_preview_options=no_preview
        )

    handlers = [MessageHandler(on_message), CallbackQueryHandler(on_callback)]
    for handler in handlers:
        tg.client.add_handler(handler)
    await asyncio.sleep(0.05)  # add_handler registers in a task of its own
    try:
        yield
    finally:
        for handler in handlers:
            tg.client.remove_handler(handler)
        if pool is not None:
            await pool.close()


# ---- one bot under load ------------------------------------------------------------------------
@dataclass
class Result:
    fixed: Phase
    saturation: Phase
    unexpected: int


async def measure(
    name: str,
    tg: OfflineTelegram,
    args: argparse.Namespace,
    first_uid: int,
) -> Result:
    use_lean_lookups(tg)
    tap = ReplyTap(tg, last_only=True)
    driver = Driver(tg, Workload(tg, first_uid), tap)
    print(f"-- {name}: {args.rate:g} updates/s for {args.seconds:g} s (+{args.warmup:g} s warm-up)")
    with GcClock() as clock:
        fixed = await driver.fixed_rate(f"{name} fixed", args.rate, args.warmup, args.seconds)
    print(f"  {name}: fixed rate: {clock}")
    gc.collect()
    print(f"-- {name}: saturation, {args.window} updates in flight, {args.seconds:g} s")
    with profiled(args.profile, f"engine-{name}-saturation"), GcClock() as clock:
        saturation = await driver.saturate(
            f"{name} saturation", args.window, args.warmup, args.seconds
        )
    print(f"  {name}: saturation: {clock}")
    return Result(fixed, saturation, driver.unexpected)


def describe(report: Report, name: str, result: Result, rate: float, is_flick: bool) -> None:
    fixed, sat = result.fixed, result.saturation
    lat = summarize(fixed.latencies())
    achieved = fixed.throughput()
    p99_ok = lat.p99_ms < TARGET_P99_MS if is_flick else None
    report.add(f"{name}: answered at {rate:g}/s offered", f"{achieved:,.0f} updates/s")
    report.add(
        f"{name}: latency at {rate:g}/s",
        f"p50 {lat.p50_ms:.1f} p99 {lat.p99_ms:.1f} max {lat.max_ms:.1f} ms",
        f"p99 < {TARGET_P99_MS:g} ms" if is_flick else "",
        p99_ok,
    )
    by_kind = Counter(k for _, _, k in fixed.measured())
    parts = []
    for kind in dict.fromkeys(SCRIPT):
        k = summarize(fixed.latencies(kind))
        parts.append(f"{kind} {k.p50_ms:.1f}/{k.p99_ms:.1f}")
    print(f"  {name}: p50/p99 ms by step at {rate:g}/s: " + ", ".join(parts))
    print(
        f"  {name}: steps answered {dict(by_kind)}; generator fell behind by up to "
        f"{fixed.late_sends * 1000:.1f} ms; unanswered {fixed.unanswered}"
    )
    s = summarize(sat.latencies())
    tput = sat.throughput()
    report.add(
        f"{name}: saturation",
        f"{tput:,.0f} updates/s",
        f"≥ {TARGET_SATURATION:,.0f}/s" if is_flick else "",
        tput >= TARGET_SATURATION if is_flick else None,
    )
    report.add(
        f"{name}: latency at saturation",
        f"p50 {s.p50_ms:.1f} p99 {s.p99_ms:.1f} max {s.max_ms:.1f} ms",
    )
    if fixed.unanswered or sat.unanswered or result.unexpected:
        report.note(
            f"{name}: unanswered {fixed.unanswered}+{sat.unanswered}, "
            f"unexpected replies {result.unexpected}"
        )


async def main(args: argparse.Namespace) -> None:
    quiet_logging()
    header("bench.engine", f"window={args.window} rate={args.rate:g}/s")
    report = Report("bench.engine")
    if args.profile is not None:
        report.note("profiling: the profiler slows the measured phases; take the figures "
                    "from a run without --profile")  # fmt: skip
    async with services(args.database_url) as svc:
        print(f"  database: {svc.database_kind}; storage: SeaweedFS {svc.seaweed.endpoint}")
        async with OfflineTelegram() as tg, flick_bot(svc, tg, args.db_pool_max) as app:
            if not args.no_gc_freeze:
                settle_heap()  # as `flick run` does once it is up
                report.note(f"gc.freeze(): {gc.get_freeze_count():,} objects frozen")
            flick = await measure("flick", tg, args, first_uid=1_000_000)
            pool_size = app.settings.db_pool_max
            describe(report, "flick", flick, args.rate, True)
            print(
                f"  flick: live actors {len(app.supervisor.actors)}, "
                f"crashes {app.supervisor.crashes}"
            )

        gc.collect()
        async with OfflineTelegram() as tg, baseline_bot(svc, tg, pool_size):
            base = await measure("baseline", tg, args, first_uid=1_000_000)
            describe(report, "baseline", base, args.rate, False)
        if args.bare:
            gc.collect()
            async with OfflineTelegram() as tg, baseline_bot(svc, tg, 0):
                bare = await measure("bare", tg, args, first_uid=1_000_000)
                describe(report, "bare kurigram (no DB)", bare, args.rate, False)
    ratio = flick.saturation.throughput() / max(1e-9, base.saturation.throughput())
    report.add(
        "flick / baseline at saturation", f"{ratio:.2f}", f"≥ {TARGET_RATIO}", ratio >= TARGET_RATIO
    )
    report.print_summary()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.engine", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="offered updates/s (1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured phase (10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured start of a phase")
    parser.add_argument(
        "--window", type=int, default=256, help="updates in flight at saturation (256)"
    )
    parser.add_argument(
        "--db-pool-max", type=int, default=10, help="DB_POOL_MAX for both bots (Flick's default 10)"
    )
    parser.add_argument(
        "--bare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure kurigram parsing + reply alone (no database): the machine's ceiling",
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="skip the gc.freeze() that `flick run` does once it is up (to compare)",
    )
    parser.add_argument("--limit", type=float, default=600.0, help="hard stop, seconds")
    add_common_args(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    run(main(arguments), arguments.limit)


__all__ = ["SCRIPT", "Driver", "Person", "Phase", "Workload", "main", "parse"]
