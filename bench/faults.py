"""Fault campaign: Flick as a real process, SIGKILLed, SIGTERMed and cut off from its database
at random moments, restarted with Telegram's redelivery each time.

The parent owns everything that outlives Flick: PostgreSQL (and a proxy in front of it, which
takes the database away for 1–10 s at a time), SeaweedFS, the fake OpenAI and Replicate (which
count every paid call), Telegram (every update users sent, with ids for good, and the bot's Stars
history), the users, and the truth about what they paid. The child (`bench.fault_child`) is Flick
on the offline Telegram. Users make videos, run out of credits, buy packages, sometimes /cancel.
Each fault is one of: SIGKILL, SIGTERM (a deploy), a database outage; each lands at random or just
after something worth hitting (a payment, a photo, a button, /cancel sent; a video delivered; a
prediction accepted). After a restart every update since the previous start comes again, as
Telegram redelivers what was not confirmed. After the last fault: settle, restart, settle,
check (bench/fault_checks.py).

    .venv/bin/python -m bench.faults                # 24 faults: SIGKILL, SIGTERM, outage 2:1:2
    .venv/bin/python -m bench.faults --faults 100 --seed 7
    .venv/bin/python -m bench.faults --kills 10 --terms 0 --outages 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import Report, Services, header, quiet_logging, run, services
from bench.fault_checks import FaultRecord, check, summarize
from bench.fault_setup import WatchedReplicate, errors_in, keep, provider_script
from bench.fault_setup import parse as parse_args
from bench.fault_telegram import FaultTelegram, Update
from bench.fault_users import Charge, People, Tally, User
from flick.testing.db_outage import DbProxy
from flick.testing.fake_openai import FakeOpenAI

OPENAI_KEY = "sk-bench-not-a-real-key"
REPLICATE_TOKEN = "r8_bench-not-a-real-token"
VIDEO_MODEL = "wan-video/wan-2.2-i2v-fast"
# Seconds after the moment, at most: how long the thing aimed at stays in flight.
AIM_SPREAD = {"random": 0.0, "video": 0.15, "prediction": 0.06, "payment": 0.1, "photo": 0.2,
              "tap": 0.1, "cancel": 0.1}  # fmt: skip
SENT_MOMENT = {"pay": "payment", "photo": "photo", "tap": "tap", "cmd:cancel": "cancel"}
ROOT = Path(__file__).resolve().parent.parent  # where `python -m bench.fault_child` resolves


class Campaign:
    def __init__(self, args: argparse.Namespace, svc: Services, cfg: dict[str, Any],
                 proxy: DbProxy) -> None:  # fmt: skip
        self.args = args
        self.svc = svc
        self.cfg = cfg
        self.proxy = proxy
        self.rng = random.Random(args.seed)
        self.users = [User(100_000 + i, args.videos) for i in range(args.users)]
        self.charges: dict[str, Charge] = {}
        self.tally = Tally()
        self.tg = FaultTelegram()
        self.people = People(self)
        self.proc: asyncio.subprocess.Process | None = None
        self.alive = asyncio.Event()
        self.lifecycle = asyncio.Lock()  # one stop, start or outage at a time
        self.moments = {k: asyncio.Event() for k in AIM_SPREAD if k != "random"}
        self.faults: list[FaultRecord] = []
        self.lives: list[list[float]] = []  # [up since, stopped at] of each incarnation
        self.incarnation = 0
        self.started_at = time.monotonic()  # when the running incarnation was started
        self.clock_offset = time.time() - time.monotonic()
        self.closing = False
        self.log_path = svc.tmp / "child.log"
        self.db: asyncpg.Pool | None = None
        self._stopping = False  # a stop the campaign asked for (else an exit is unplanned)
        self._reader: asyncio.Task[None] | None = None
        self._revivals: set[asyncio.Task[None]] = set()

    # ---- the child ---------------------------------------------------------------------------
    async def start_child(self) -> None:
        """Start Flick; once it is up, hand it what Telegram would redeliver."""
        previous_start, first = self.started_at, self.incarnation == 0
        self.cfg["incarnation"] = self.incarnation
        self.cfg["stars"] = list(self.tg.stars.values())
        self.incarnation += 1
        env = dict(os.environ, FLICK_FAULT_CHILD=json.dumps(self.cfg))
        self.started_at = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.fault_child",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env=env, cwd=ROOT, limit=1 << 20,
            )  # fmt: skip
        ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(self.proc, ready))
        try:
            await asyncio.wait_for(ready, 60)
        except TimeoutError:
            raise RuntimeError(f"Flick did not start; see {self.log_path}") from None
        self._stopping = False
        self.lives.append([time.monotonic(), float("inf")])
        due = [] if first else self.tg.redeliveries(previous_start, self.args.redeliver_window)
        self.alive.set()
        for update in due:
            if update.deliveries:
                self.tally.redelivered[update.kind.split(":")[0]] += 1
                self.tally.redelivered_updates.add(update.n)
            else:
                self.tally.late += 1
            await self.send(update, moment=False)

    async def _read(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[None]) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            kind = self.tg.hear(json.loads(line))
            if kind == "ready" and not ready.done():
                ready.set_result(None)
            elif kind == "video":
                self.moments["video"].set()
        if not ready.done():
            ready.set_exception(RuntimeError("the child closed its output before it was ready"))
        elif not self._stopping and not self.closing:
            # Flick ended on its own: a supervisor (systemd) would start it again.
            self.alive.clear()
            self._ended()
            revive = asyncio.create_task(self._revive(proc))
            self._revivals.add(revive)
            revive.add_done_callback(self._revivals.discard)

    async def _revive(self, dead: asyncio.subprocess.Process) -> None:
        async with self.lifecycle:
            if self.proc is not dead or self.closing:
                return
            await dead.wait()
            self._ended()
            self.faults.append(FaultRecord("exit", f"rc={dead.returncode}", time.monotonic()))
            await self.start_child()

    async def _stop(self, how: Callable[[asyncio.subprocess.Process], Awaitable[None]]) -> None:
        self._stopping = True
        self.alive.clear()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            await how(proc)
        self._ended()
        if self._reader is not None:
            await self._reader  # everything Telegram received before the stop is counted

    def _ended(self) -> None:
        if self.lives and self.lives[-1][1] == float("inf"):
            self.lives[-1][1] = time.monotonic()

    async def kill_child(self) -> None:
        async def sigkill(proc: asyncio.subprocess.Process) -> None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()

        await self._stop(sigkill)

    async def terminate_child(self) -> None:
        """SIGTERM, as systemd or Docker stop a service; SIGKILL only if it overstays."""

        async def sigterm(proc: asyncio.subprocess.Process) -> None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()

        await self._stop(sigterm)

    async def stop_child(self) -> None:
        """The gentlest way: end of input, then SIGTERM, then SIGKILL, each after a wait."""

        async def gently(proc: asyncio.subprocess.Process) -> None:
            assert proc.stdin is not None
            with contextlib.suppress(ConnectionError):
                proc.stdin.close()
            for sig, wait in ((None, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                try:
                    await asyncio.wait_for(proc.wait(), wait)
                    return
                except TimeoutError:
                    continue

        await self._stop(gently)

    async def send(self, update: Update, *, moment: bool = True) -> None:
        """An update reaches Flick if it is up; if not, Telegram keeps it for the restart."""
        proc = self.proc
        if moment and update.kind in SENT_MOMENT:
            self.moments[SENT_MOMENT[update.kind]].set()
        if not self.alive.is_set() or proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write((json.dumps(update.op) + "\n").encode())
            update.sent_to.append((self.incarnation - 1, time.monotonic()))
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError):
            pass

    async def until(
        self, check: Callable[[], Awaitable[Any]], seconds: float, step: float = 0.05
    ) -> Any:
        """Poll `check` until it returns something truthy; the clock runs only while Flick is up
        (a restart in between gives the user their patience back)."""
        left = seconds
        while left > 0:
            value = await check()
            if value:
                return value
            if not self.alive.is_set():
                await self.alive.wait()
                left = seconds
                continue
            await asyncio.sleep(step)
            left -= step
        return None

    # ---- the faults --------------------------------------------------------------------------
    def plan(self) -> list[str]:
        a = self.args
        kinds = ["SIGKILL"] * a.kills + ["SIGTERM"] * a.terms + ["outage"] * a.outages
        self.rng.shuffle(kinds)
        return kinds

    async def faulter(self) -> None:
        low, high = self.args.uptime
        kinds = self.plan()
        for n, kind in enumerate(kinds, 1):
            aim = self.rng.choice(self.args.aim)
            await asyncio.sleep(self.rng.uniform(low, high) / (1 if aim == "random" else 3))
            if aim != "random":
                # Aimed faults land just after a moment that matters, where a random one rarely
                # does: a payment, photo, tap or /cancel on its way in, a video just at Telegram
                # (its row is being marked delivered), a prediction just accepted (its id is not
                # saved yet).
                moment = self.moments[aim]
                moment.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moment.wait(), high * 3)
                await asyncio.sleep(self.rng.uniform(0.0, AIM_SPREAD[aim]))
            async with self.lifecycle:
                await self.fault(kind, aim)
            print(f"\r  faults: {n}/{len(kinds)}", end="", flush=True)
        print()

    async def fault(self, kind: str, aim: str) -> None:
        record = FaultRecord(kind, aim, time.monotonic())
        self.faults.append(record)
        if kind == "outage":
            record.seconds = self.rng.uniform(*self.args.outage_seconds)
            async with self.proxy.outage(record.seconds):
                pass
        else:
            await (self.kill_child() if kind == "SIGKILL" else self.terminate_child())
            await self.start_child()
        record.end = time.monotonic()


# ---- main --------------------------------------------------------------------------------------
async def main(args: argparse.Namespace) -> None:
    quiet_logging()
    header("bench.faults", f"kills={args.kills} terms={args.terms} outages={args.outages} "
           f"users={args.users} seed={args.seed}")  # fmt: skip
    report = Report("bench.faults")
    started = time.perf_counter()
    replicate = WatchedReplicate(api_token=REPLICATE_TOKEN, start_delay=args.start_delay,
                                 run_time=args.run_time, models={VIDEO_MODEL})  # fmt: skip
    async with (
        services(args.database_url) as svc,
        DbProxy.for_url(svc.database_url) as proxy,
        FakeOpenAI(api_key=OPENAI_KEY, models={"gpt-image-1"}) as openai,
        replicate,
        svc.storage() as storage,
    ):
        provider_script(args, openai, replicate)
        await storage.put("warm-up", b"warm", "text/plain")
        cfg = {
            "data_dir": str(svc.tmp / "flick"),
            "database_url": proxy.url_for(svc.database_url),  # Flick's way to it can be cut
            "s3_endpoint": svc.seaweed.endpoint,
            "s3_access_key": svc.seaweed.access_key,
            "s3_secret_key": svc.seaweed.secret_key,
            "s3_bucket": storage.bucket,
            "openai_url": openai.base_url,
            "openai_key": OPENAI_KEY,
            "replicate_url": replicate.base_url,
            "replicate_token": REPLICATE_TOKEN,
            "video_model": VIDEO_MODEL,
            "ai_concurrency": args.ai_concurrency,
            "free_credits": 1,
            "poll_interval": 0.1,
            "budget": 60.0,
            "telegram_latency": args.telegram_latency,
        }
        print(f"  database: {svc.database_kind}, Flick through a proxy on port {proxy.port}; "
              f"child log: {svc.tmp / 'child.log'}")  # fmt: skip
        campaign = Campaign(args, svc, cfg, proxy)
        replicate.created = campaign.moments["prediction"]
        replicate.reply_latency = args.reply_latency
        cfg["uids"] = [u.uid for u in campaign.users]
        campaign.db = await asyncpg.create_pool(svc.database_url, min_size=2, max_size=8)
        try:
            await campaign.start_child()
            lives = [asyncio.create_task(campaign.people.life(u)) for u in campaign.users]
            await campaign.faulter()
            print(f"  {len(campaign.faults)} faults after {time.perf_counter() - started:.0f} s; "
                  "settling (no more faults)")  # fmt: skip
            _, pending = await asyncio.wait(lives, timeout=args.settle)
            campaign.closing = True
            for task in pending:
                task.cancel()
            await asyncio.gather(*lives, return_exceptions=True)
            await wait_generations(campaign, args.settle)
            # One last restart, as after any deploy: what is stuck now stays stuck.
            async with campaign.lifecycle:
                await campaign.stop_child()
                await campaign.start_child()
            await wait_generations(campaign, args.settle)
            await asyncio.sleep(2.0)
            async with campaign.lifecycle:
                await campaign.stop_child()
            summarize(campaign, report)
            failed = await check(campaign, openai, replicate, storage, report)
        finally:
            campaign.closing = True
            with contextlib.suppress(Exception):
                await campaign.kill_child()
            await campaign.db.close()
            errors = errors_in(campaign.log_path)
            if errors:
                report.note(f"child log: {sum(errors.values())} ERROR line(s), kept as "
                            f"{keep(campaign.log_path)}; most common:")  # fmt: skip
                for line, n in errors.most_common(6):
                    print(f"    {n:>4} × {line}")
    report.note(f"campaign took {time.perf_counter() - started:.0f} s")
    report.print_summary()
    if failed:
        print(f"  INVARIANTS THAT FAIL ON THIS ENGINE ({len(failed)}):")
        for name in failed:
            print(f"    - {name}")
    else:
        print("  every invariant held")


async def wait_generations(campaign: Campaign, seconds: float) -> None:
    assert campaign.db is not None
    db = campaign.db

    async def none_open() -> bool:
        return not await db.fetchval(
            "SELECT COUNT(*) FROM generations WHERE status <> 'done' AND NOT refunded"
        )

    await campaign.until(none_open, seconds, step=0.2)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_args(__doc__, argv)


if __name__ == "__main__":
    arguments = parse()
    run(main(arguments), arguments.limit)
