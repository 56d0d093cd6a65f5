"""Scale: many users once, then idle; then many generations in flight at once.

A. N distinct users send /start once each (real PostgreSQL: each is a new user with free
   credits). Measured: peak and settled RSS, memory per live actor, and whether idle actors (a
   small ACTOR_IDLE_SECONDS) really go away: actors, mailboxes, user records, tasks.
B. G users start a generation at once against the fake providers (in their own process) with a
   latency longer than the measurement, AI_CONCURRENCY as large as the settings allow (1000):
   RSS with G generations in flight, and /balance latency for other users meanwhile.

Events go straight to the engine (`Flick.dispatch`), as the Telegram adapter hands them over,
with an outbox that only counts and times replies: the memory measured is the engine's, not a
recorder's or the offline Telegram's.

    .venv/bin/python -m bench.scale                                   # 20k users, 3k generations
    .venv/bin/python -m bench.scale --users 100000 --generations 10000   # the full size, ~10 min

Targets: < 512 MB RSS with 10,000 generations in flight; /balance p99 < 50 ms meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    GcClock,
    Report,
    RssSampler,
    add_common_args,
    bench_settings,
    header,
    jpeg,
    profiled,
    quiet_logging,
    rss_mb,
    run,
    services,
    summarize,
    wait_until,
)
from bench.fakes import OPENAI_KEY, REPLICATE_TOKEN, VIDEO_MODEL, FakeProviders
from flick import events as ev
from flick.actors.user import UserActor
from flick.app import Flick
from flick.media import VideoMeta
from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.pipeline.runner import PipelineConfig
from flick.ports import AlbumItem, Keyboard

TARGET_RSS_MB = 512.0
TARGET_BALANCE_P99_MS = 50.0


class CountingOutbox:
    """flick.ports.Outbox that keeps nothing: it counts what is sent and times the replies a
    benchmark is waiting for (chat → when the update was dispatched)."""

    def __init__(self, photo: bytes) -> None:
        self.photo = photo
        self.sent = 0
        self.edits = 0
        self.waiting: dict[int, float] = {}
        self.latencies: list[float] = []
        self.answered = asyncio.Event()
        self._ids = itertools.count(1)

    def expect(self, chat: int, at: float | None = None) -> None:
        self.waiting[chat] = time.perf_counter() if at is None else at

    def _reply(self, chat: int) -> None:
        started = self.waiting.pop(chat, None)
        if started is not None:
            self.latencies.append(time.perf_counter() - started)
            self.answered.set()

    async def send_text(self, chat_id: int, text: str, keyboard: Keyboard | None = None) -> int:
        self.sent += 1
        self._reply(chat_id)
        return next(self._ids)

    async def edit_text(
        self, chat_id: int, message_id: int, text: str, keyboard: Keyboard | None = None
    ) -> None:
        self.edits += 1

    async def answer_button(
        self, callback_id: str, text: str | None = None, alert: bool = False
    ) -> None:
        return None

    async def send_video(
        self,
        chat_id: int,
        storage_key: str,
        caption: str,
        keyboard: Keyboard | None = None,
        file_id: str | None = None,
        *,
        local_path: Path | None = None,
        meta: VideoMeta | None = None,
    ) -> str:
        self.sent += 1
        return file_id or f"video-{storage_key}"

    async def send_album(self, chat_id: int, items: Sequence[AlbumItem]) -> None:
        return None

    async def send_invoice(self, chat_id: int, **kwargs: Any) -> int:
        return next(self._ids)

    async def answer_pre_checkout(self, query_id: str, ok: bool, error: str | None = None) -> None:
        return None

    async def download(self, photo: ev.PhotoRef) -> AsyncIterator[bytes]:
        yield self.photo

    async def refund_star_payment(self, user_id: int, charge_id: str) -> bool:
        return True

    async def create_invoice_link(self, **kwargs: Any) -> str:
        return "https://t.me/$bench"

    async def edit_subscription(self, user_id: int, charge_id: str, *, canceled: bool) -> None:
        return None


def user(uid: int) -> ev.UserInfo:
    return ev.UserInfo(uid, uid, None, f"User{uid}", "en")


class Driver:
    def __init__(self, app: Flick, outbox: CountingOutbox) -> None:
        self.app = app
        self.outbox = outbox
        self.ids = itertools.count(1)

    async def send(self, event: ev.Event, expect: bool = True, at: float | None = None) -> None:
        if expect:
            # From when it was due, not when it went out: a stalled loop (a GC pause) delays the
            # sending too, and that delay is the users' wait as well.
            self.outbox.expect(event.user.chat_id, at)
        await self.app.dispatch(event)

    def command(self, uid: int, name: str) -> ev.Command:
        return ev.Command(user(uid), f"m{next(self.ids)}", name)

    async def many(self, events: Sequence[ev.Event], window: int) -> float:
        """Dispatch events keeping at most `window` replies outstanding; returns events/s."""
        started = time.perf_counter()
        for event in events:
            while len(self.outbox.waiting) >= window:
                self.outbox.answered.clear()
                await self.outbox.answered.wait()
            await self.send(event)
        while self.outbox.waiting:
            self.outbox.answered.clear()
            try:
                await asyncio.wait_for(self.outbox.answered.wait(), 30)
            except TimeoutError:
                break
        return len(events) / (time.perf_counter() - started)


def malloc_trim() -> bool:
    """Give freed heap back to the OS (glibc), so "settled" RSS shows what is really held."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


# ---- A: many users once, then idle ---------------------------------------------------------------
def _flicks_tasks() -> set[asyncio.Task[Any]]:
    """Tasks running Flick's own code. pgqueuer starts its queue manager's tasks (health check,
    buffers, notice waits) lazily, during this part: counted, they read as actors' leftovers."""
    return {
        task
        for task in asyncio.all_tasks()
        if "/flick/" in getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "")
    }


async def users_once(d: Driver, args: argparse.Namespace, report: Report) -> None:
    sup = d.app.supervisor
    n = args.users
    print(f"-- A: {n:,} users send /start once (ACTOR_IDLE_SECONDS={args.idle:g})")
    gc.collect()
    before = rss_mb()
    tasks_before = _flicks_tasks()
    peak_live, at_peak = 0, (0, before)
    with RssSampler(0.25) as sampler:

        async def watch() -> None:
            nonlocal peak_live, at_peak
            while True:
                live = len(sup.actors)
                if live > peak_live:
                    peak_live, at_peak = live, (live, rss_mb())
                await asyncio.sleep(0.25)

        watcher = asyncio.create_task(watch())
        events = [d.command(10_000_000 + i, "start") for i in range(n)]
        rate = await d.many(events, args.window)
        watcher.cancel()
        live_after = len(sup.actors)
        objects = len(gc.get_objects())
        rss_full = rss_mb()
    per_actor_kb = (at_peak[1] - before) * 1024 / max(1, at_peak[0])
    report.add("A: new users onboarded", f"{n:,} at {rate:,.0f} users/s")
    report.add("A: live actors at the peak", f"{peak_live:,}")
    report.add("A: peak RSS", f"{sampler.peak:.0f} MB (from {before:.0f} MB)")
    report.add("A: memory per live actor", f"{per_actor_kb:.1f} KB (RSS growth / live actors)")
    report.add("A: Python objects per live actor",
               f"~{(objects - args.objects_before) / max(1, live_after):.0f} "
               f"({live_after:,} live after the last reply, RSS {rss_full:.0f} MB)")  # fmt: skip
    del events
    # Now nobody writes: every actor should stop after ACTOR_IDLE_SECONDS.
    started = time.perf_counter()
    await wait_until(lambda: not (sup.actors or sup._mailboxes), args.idle * 2 + 30, 0.5)
    gone_after = time.perf_counter() - started
    gc.collect()
    trimmed = malloc_trim()
    settled = rss_mb()  # before the census below, which itself allocates
    left = {
        "actors": len(sup.actors),
        "mailboxes": len(sup._mailboxes),
        "user records": len(sup._users),
        "actor tasks": len(sup._tasks),
        "UserActor objects": sum(1 for o in gc.get_objects() if isinstance(o, UserActor)),
        "extra tasks of Flick's": len(_flicks_tasks() - tasks_before),
    }
    ok = not any(left.values())
    report.add("A: idle actors gone", f"after {gone_after:.1f} s; left: "
               + ", ".join(f"{k} {v}" for k, v in left.items()), "all 0", ok)  # fmt: skip
    report.add("A: settled RSS", f"{settled:.0f} MB{' (after malloc_trim)' if trimmed else ''}")


# ---- B: many generations in flight -------------------------------------------------------------
async def generations_in_flight(
    d: Driver, fakes: FakeProviders, args: argparse.Namespace, report: Report
) -> None:
    sup, outbox = d.app.supervisor, d.outbox
    g = args.generations
    print(f"-- B: {g:,} generations at once, AI_CONCURRENCY={d.app.limiter.size}, providers "
          f"answering after {args.provider_latency:g} s")  # fmt: skip
    base = 20_000_000
    makers = [base + i for i in range(g)]
    others = [base + g + i for i in range(args.others)]
    # The other users are known to the bot (live actors), as people who are using it are.
    await d.many([d.command(u, "start") for u in others], args.window)
    steps: list[list[ev.Event]] = [
        [d.command(u, "create") for u in makers],
        [ev.ButtonPress(user(u), f"c{next(d.ids)}", f"cb{u}", "consent") for u in makers],
        [ev.ButtonPress(user(u), f"c{next(d.ids)}", f"cb{u}", "style:hug") for u in makers],
    ]
    t0 = time.perf_counter()
    for events in steps:
        await d.many(events, args.window)
    # Two photos each; the second starts the generation. No reply is awaited for the first
    # ("one more"), so photos are paced by the mailboxes, not by the window.
    for n in range(2):
        photos = [
            ev.Photo(user(u), f"p{next(d.ids)}", ev.PhotoRef(f"f{u}-{n}", f"u{u}-{n}", 2048))
            for u in makers
        ]
        await d.many(photos, args.window)
    await wait_until(lambda: sup.generations_running >= g, args.setup_limit)
    setup = time.perf_counter() - t0
    running = sup.generations_running
    report.add("B: generations in flight", f"{running:,} of {g:,} (set up in {setup:.0f} s)")
    await asyncio.sleep(2.0)  # the limiter has handed out its permits; the rest queue
    stats = await fakes.stats()
    report.add("B: AI calls at the provider at once",
               f"{stats['max_edits_in_flight']} (limiter: {d.app.limiter.running} running, "
               f"{d.app.limiter.waiting:,} queued)")  # fmt: skip
    # /balance from the other users at a steady rate while all that is in flight.
    outbox.latencies.clear()
    with RssSampler(0.25) as sampler, GcClock() as clock, \
            profiled(args.profile, "scale-balance-under-load"):  # fmt: skip
        interval = 1.0 / args.balance_rate
        start = time.perf_counter()
        for i in itertools.count():
            at = start + i * interval
            if at > start + args.seconds:
                break
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            uid = others[i % len(others)]
            if uid not in outbox.waiting:
                await d.send(d.command(uid, "balance"), at=at)
        await asyncio.sleep(1.0)
    lat = summarize(outbox.latencies)
    rss = max(sampler.peak, rss_mb())
    report.add(f"B: RSS with {running:,} generations in flight", f"{rss:.0f} MB",
               f"< {TARGET_RSS_MB:g} MB", rss < TARGET_RSS_MB)  # fmt: skip
    ok = lat.p99_ms < TARGET_BALANCE_P99_MS
    report.add(f"B: /balance latency ({args.balance_rate:g}/s, other users)",
               f"p50 {lat.p50_ms:.1f} p99 {lat.p99_ms:.1f} max {lat.max_ms:.1f} ms ({lat.count})",
               f"p99 < {TARGET_BALANCE_P99_MS:g} ms", ok)  # fmt: skip
    report.add("B: garbage collector meanwhile", str(clock))
    report.add("B: still in flight at the end", f"{sup.generations_running:,}")


async def main(args: argparse.Namespace) -> None:
    quiet_logging()
    header("bench.scale", f"users={args.users} generations={args.generations}")
    report = Report("bench.scale")
    if args.profile is not None:
        report.note("profiling: the profiler slows the measured phases; take the figures "
                    "from a run without --profile")  # fmt: skip
    gc.collect()
    async with (
        services(args.database_url) as svc,
        FakeProviders(
            image_latency=args.provider_latency, start_delay=1.0, run_time=args.provider_latency
        ) as fakes,  # fmt: skip
    ):
        print(f"  database: {svc.database_kind}; storage: SeaweedFS {svc.seaweed.endpoint}")
        outbox = CountingOutbox(jpeg((150, 60, 200), (320, 400)))
        settings = bench_settings(
            svc.tmp / "flick",
            actor_idle_seconds=args.idle,
            ai_concurrency=min(args.generations, 1000),  # the most Settings allows
            image_provider="openai",
            video_provider="replicate",
        )
        # Long budgets: nothing may give up while the measurement runs.
        pipeline = PipelineConfig(compose_budget=3600, animate_budget=3600, deliver_budget=3600)
        image = OpenAIImageProvider(OPENAI_KEY, base_url=fakes.openai_url, timeout=3600)
        video = ReplicateVideoProvider(REPLICATE_TOKEN, model=VIDEO_MODEL,
                                       base_url=fakes.replicate_url)  # fmt: skip
        async with svc.storage() as storage:
            await storage.put("warm-up", b"warm", "text/plain")
            args.objects_before = len(gc.get_objects())
            async with Flick(settings, outbox, image=image, video=video, pipeline=pipeline,
                             database_url=svc.database_url, storage=storage, lock=False,
                             resume=False) as app:  # fmt: skip
                d = Driver(app, outbox)
                if args.users:
                    await users_once(d, args, report)
                if args.generations:
                    await generations_in_flight(d, fakes, args, report)
                print("-- stopping (generations are parked, as on a shutdown)")
                await app.supervisor.stop(drain_seconds=5)
    report.print_summary()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=20_000, help="A: users touching once (20,000)")
    p.add_argument("--idle", type=float, default=10.0, help="A: ACTOR_IDLE_SECONDS (10)")
    p.add_argument("--window", type=int, default=256, help="replies outstanding at most (256)")
    p.add_argument("--generations", type=int, default=3_000,
                   help="B: generations in flight (3,000)")  # fmt: skip
    p.add_argument("--others", type=int, default=500, help="B: other users asking /balance")
    p.add_argument("--balance-rate", type=float, default=100.0, help="B: /balance per second")
    p.add_argument("--seconds", type=float, default=15.0, help="B: measured seconds (15)")
    p.add_argument("--provider-latency", type=float, default=1800.0,
                   help="B: seconds the providers take (longer than the bench)")  # fmt: skip
    p.add_argument("--setup-limit", type=float, default=600.0)
    p.add_argument("--limit", type=float, default=1800.0, help="hard stop, seconds")
    add_common_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    run(main(arguments), arguments.limit)
