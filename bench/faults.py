"""Fault campaign: Flick as a real process, SIGKILLed at random moments, restarted each time.

The parent owns everything that outlives Flick: PostgreSQL, SeaweedFS, the fake OpenAI and
Replicate (which count every paid call), the users, and the truth about what they paid. The child
(`bench.fault_child`) is Flick on the offline Telegram. Users make videos, run out of credits,
buy packages (payments sometimes delivered twice, and redelivered after every restart, as
Telegram does with updates a bot did not acknowledge), sometimes /cancel. The killer SIGKILLs the
child at random and restarts it on the same database and storage; the engine resumes unfinished
generations. After the last kill the campaign settles, restarts Flick once more, and checks:

  every generation delivered or refunded · balance == ledger sum == free + bought − spent +
  refunds · every charge credited exactly once · no prediction created twice for a generation ·
  no user stuck in PROCESSING

    .venv/bin/python -m bench.faults                  # 24 stops, ~3 minutes
    .venv/bin/python -m bench.faults --kills 50 --users 60 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from bench.common import Report, Services, add_common_args, header, quiet_logging, run, services
from flick.testing.fake_http import Call
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.faults import Fault

OPENAI_KEY = "sk-bench-not-a-real-key"
REPLICATE_TOKEN = "r8_bench-not-a-real-token"
VIDEO_MODEL = "wan-video/wan-2.2-i2v-fast"
PACKAGES = ((1, 50), (5, 225), (10, 400), (25, 875))  # Flick's default price list
STYLES = ("romantic", "hug", "kiss", "dance")
AIM_SPREAD = {"video": 0.15, "prediction": 0.06}  # seconds after the moment, at most
ROOT = Path(__file__).resolve().parent.parent  # where `python -m bench.fault_child` resolves


class WatchedReplicate(FakeReplicate):
    """FakeReplicate that tells the killer the moment a prediction exists (it is billed from
    then on), and whose answer then takes `reply_latency` to reach Flick, as over a network."""

    created = asyncio.Event()
    reply_latency = 0.0

    async def _create(self, call: Call) -> web.StreamResponse:
        response = await super()._create(call)
        if response.status == 201:
            self.created.set()
            await asyncio.sleep(self.reply_latency)
        return response


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
    videos: Counter[int] = field(default_factory=Counter)  # video messages Telegram received
    stuck_seen: list[tuple[int, int | None]] = field(default_factory=list)
    cancel_said_refunded: int = 0  # "your credit is back" after /cancel of a finished video
    duplicates_sent: int = 0
    redelivered: int = 0
    precheckout_refused: int = 0


class Campaign:
    def __init__(self, args: argparse.Namespace, svc: Services, cfg: dict[str, Any]) -> None:
        self.args = args
        self.svc = svc
        self.cfg = cfg
        self.rng = random.Random(args.seed)
        self.users = [User(100_000 + i, args.videos) for i in range(args.users)]
        self.charges: dict[str, Charge] = {}
        self.tally = Tally()
        self.proc: asyncio.subprocess.Process | None = None
        self.alive = asyncio.Event()
        self.restarts = 0
        self.moments = {"video": asyncio.Event(), "prediction": asyncio.Event()}
        self.aimed: Counter[str] = Counter()
        self.terms = 0
        self.stops: list[tuple[float, str]] = []  # (time.monotonic(), signal)
        self.incarnation = 0
        self.kills = 0
        self.closing = False
        self.prechecks: dict[int, asyncio.Queue[bool]] = {}
        self.texts: dict[int, list[str]] = {}
        self.log_path = svc.tmp / "child.log"
        self.db: asyncpg.Pool | None = None
        self._reader: asyncio.Task[None] | None = None

    # ---- the child ---------------------------------------------------------------------------
    async def start_child(self) -> None:
        self.cfg["incarnation"] = self.incarnation
        self.incarnation += 1
        env = dict(os.environ, FLICK_FAULT_CHILD=json.dumps(self.cfg))
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
        self.alive.set()

    async def _read(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[None]) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            event = json.loads(line)
            kind = event["ev"]
            if kind == "ready" and not ready.done():
                ready.set_result(None)
            elif kind == "video":
                self.tally.videos[event["chat"]] += 1
                self.moments["video"].set()
            elif kind == "text":
                self.texts.setdefault(event["chat"], []).append(event["text"])
            elif kind == "precheckout" and event.get("uid") is not None:
                self.prechecks.setdefault(event["uid"], asyncio.Queue()).put_nowait(event["ok"])
        if not ready.done():
            ready.set_exception(RuntimeError("the child closed its output before it was ready"))

    async def kill_child(self) -> None:
        self.alive.clear()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        if self._reader is not None:
            await self._reader  # everything Telegram received before the kill is counted
        self.kills += 1

    async def terminate_child(self) -> None:
        """SIGTERM, as systemd or Docker stop a service; SIGKILL only if it overstays."""
        self.alive.clear()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await self._reader
        self.terms += 1

    async def stop_child(self) -> None:
        """The graceful way: end of input, then SIGTERM, then SIGKILL, each after a wait."""
        self.alive.clear()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            proc.stdin.close()
        for sig, wait in ((None, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), wait)
                break
            except TimeoutError:
                continue
        if self._reader is not None:
            await self._reader

    async def send(self, cmd: dict[str, Any]) -> None:
        """What a user does; lost when Flick is down (the user tries again, as people do)."""
        proc = self.proc
        if not self.alive.is_set() or proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write((json.dumps(cmd) + "\n").encode())
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError):
            pass

    # ---- reading the database ---------------------------------------------------------------
    async def look(self, uid: int) -> tuple[int | None, str | None, dict[str, Any]]:
        assert self.db is not None
        row = await self.db.fetchrow(
            'SELECT u.balance, s.state, s.data FROM users u LEFT JOIN user_sessions s '
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

    # ---- a user's life ----------------------------------------------------------------------
    async def life(self, u: User) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while u.done < u.target and not self.closing:
                await self.alive.wait()
                await self.step(u)

    async def step(self, u: User) -> None:
        balance, state, data = await self.look(u.uid)
        uid = u.uid

        async def state_is_not(old: str | None) -> bool:
            return (await self.look(uid))[1] != old

        if balance is None:
            await self.send({"op": "cmd", "uid": uid, "name": "start"})
            await self.until(lambda: self._exists(uid), 5)
        elif state == "processing":
            await self.follow_generation(u, data.get("generation_id"))
        elif balance < 1:
            await self.buy(u)
        elif state in (None, "idle"):
            await self.send({"op": "cmd", "uid": uid, "name": "create"})
            await self.until(lambda: state_is_not(state), 5)
        elif state == "consent":
            await self.send({"op": "tap", "uid": uid, "data": "consent"})
            await self.until(lambda: state_is_not(state), 5)
        elif state == "choosing_style":
            style = self.rng.choice(STYLES)
            mid = data.get("picker_message_id")
            await self.send({"op": "tap", "uid": uid, "data": f"style:{style}", "mid": mid})
            await self.until(lambda: state_is_not(state), 5)
        elif state == "waiting_for_photos":
            have = len(data.get("photos") or [])

            async def moved() -> bool:
                _, now, d = await self.look(uid)
                return now != state or len(d.get("photos") or []) != have

            await self.send({"op": "photo", "uid": uid})
            await self.until(moved, 6)
        else:
            await asyncio.sleep(0.2)

    async def _exists(self, uid: int) -> bool:
        return (await self.look(uid))[0] is not None

    async def follow_generation(self, u: User, gen_id: int | None) -> None:
        """Wait for the video (or the refund); now and then the user gives up and /cancels."""
        assert self.db is not None
        db = self.db
        if gen_id is not None:
            u.generations.add(gen_id)
            if self.rng.random() < self.args.cancel_rate and self.alive.is_set():
                await asyncio.sleep(self.rng.uniform(0.1, 1.5))
                await self.send({"op": "cmd", "uid": u.uid, "name": "cancel"})
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
        await self.send({"op": "cmd", "uid": u.uid, "name": "balance"})
        if not await self.until(left_processing, self.args.stuck_grace / 2, step=0.1):
            # Their video is over (or never existed) and the bot still says "busy": stuck.
            self.tally.stuck_seen.append((u.uid, gen_id))
            await self.send({"op": "cmd", "uid": u.uid, "name": "cancel"})
            await self.until(left_processing, 5)
            if any("credit is back" in t for t in self.texts.get(u.uid, [])[-2:]):
                self.tally.cancel_said_refunded += 1

    async def buy(self, u: User) -> None:
        assert self.db is not None
        db, uid = self.db, u.uid
        index = self.rng.choices(range(len(PACKAGES)), weights=(5, 3, 1, 1))[0]
        since = await db.fetchval("SELECT now()")
        await self.send({"op": "tap", "uid": uid, "data": f"buy:{index}"})

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
        answers = self.prechecks.setdefault(uid, asyncio.Queue())
        while not answers.empty():
            answers.get_nowait()
        await self.send(
            {"op": "precheckout", "uid": uid, "payload": payload, "amount": order["stars"]}
        )
        try:
            ok = await asyncio.wait_for(answers.get(), 5)
        except TimeoutError:
            return  # Telegram would cancel the payment: no money moved; they try again
        if not ok:
            self.tally.precheckout_refused += 1
            return
        charge_id = f"stxBench{uid}x{u.purchases}x{self.rng.randrange(1 << 30)}"
        u.purchases += 1
        self.charges[charge_id] = Charge(uid, payload, order["stars"], order["package_credits"])
        await self.deliver_payment(charge_id)
        if self.rng.random() < self.args.duplicate_rate:
            self.tally.duplicates_sent += 1
            await self.deliver_payment(charge_id)

        async def credited() -> Any:
            return await db.fetchval(
                "SELECT 1 FROM payments WHERE telegram_payment_charge_id = $1", charge_id
            )

        await self.until(credited, 30)

    async def deliver_payment(self, charge_id: str) -> None:
        c = self.charges[charge_id]
        await self.send(
            {"op": "pay", "uid": c.uid, "payload": c.payload, "amount": c.stars,
             "charge": charge_id}
        )  # fmt: skip

    async def redeliver(self) -> None:
        """After a restart: the payments Flick may not have recorded come again, and a few it did
        (Telegram redelivers what was not acknowledged; a replay must change nothing)."""
        assert self.db is not None
        rows = await self.db.fetch("SELECT telegram_payment_charge_id FROM payments")
        known = {r[0] for r in rows}
        missing = [c for c in self.charges if c not in known]
        again = self.rng.sample(sorted(known & set(self.charges)), min(3, len(known)))
        for charge_id in missing + again:
            self.tally.redelivered += 1
            await self.deliver_payment(charge_id)

    # ---- the killer ---------------------------------------------------------------------------
    async def killer(self) -> None:
        low, high = self.args.uptime
        for _ in range(self.args.kills):
            aim = self.rng.choice(self.args.aim)
            await asyncio.sleep(self.rng.uniform(low, high) / (1 if aim == "random" else 3))
            if aim == "graceful":
                # A deploy: SIGTERM at the moment a prediction was just accepted, then the same
                # restart. A graceful stop must not pay twice either.
                moment = self.moments["prediction"]
                moment.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moment.wait(), high * 3)
                await asyncio.sleep(self.rng.uniform(0.0, AIM_SPREAD["prediction"]))
                self.aimed[aim] += 1
                self.stops.append((time.monotonic(), "SIGTERM"))
                await self.terminate_child()
                await self.start_child()
                self.restarts += 1
                await self.redeliver()
                continue
            if aim != "random":
                # Aimed kills land just after a moment that matters, where a random one rarely
                # does: a video has reached Telegram (its row is being marked delivered), or the
                # provider has just created a prediction (its id is not saved yet).
                moment = self.moments[aim]
                moment.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moment.wait(), high * 3)
                await asyncio.sleep(self.rng.uniform(0.0, AIM_SPREAD[aim]))
            self.aimed[aim] += 1
            self.stops.append((time.monotonic(), "SIGKILL"))
            await self.kill_child()
            await self.start_child()
            self.restarts += 1
            await self.redeliver()
            done = self.kills + self.terms
            print(f"\r  stops survived: {done}/{self.args.kills}", end="", flush=True)
        print()


# ---- checks ------------------------------------------------------------------------------------
async def check(
    campaign: Campaign, openai: FakeOpenAI, replicate: FakeReplicate, report: Report
) -> None:
    assert campaign.db is not None
    db = campaign.db
    free = campaign.cfg["free_credits"]

    def inv(name: str, bad: int, detail: str = "") -> None:
        report.add(name, f"{bad} violation(s){' — ' + detail if detail else ''}", "0", bad == 0)

    gens = await db.fetch('SELECT id, "user", status, refunded, charged, prediction_id, '
                          "combined_key FROM generations")  # fmt: skip
    open_gens = [g for g in gens if not (g["status"] == "done" or g["refunded"])]
    done = Counter(g["user"] for g in gens if g["status"] == "done")
    report.add("generations", f"{len(gens)}: {sum(done.values())} delivered, "
               f"{sum(1 for g in gens if g['refunded'])} refunded")  # fmt: skip
    inv("every generation delivered or refunded", len(open_gens),
        ", ".join(f"#{g['id']} {g['status']}" for g in open_gens[:5]))  # fmt: skip
    both = sum(1 for g in gens if g["status"] == "done" and g["refunded"])
    inv("delivered and also refunded", both)
    videos = campaign.tally.videos
    users = {u.uid for u in campaign.users}
    missing = sum(max(0, done[uid] - videos[uid]) for uid in users)
    extra = sum(max(0, videos[uid] - done[uid]) for uid in users)
    inv("video received for every delivered generation", missing)
    report.add("videos sent twice (kill between send and record)", str(extra))

    rows = await db.fetch(
        "SELECT u.telegram_id AS uid, u.balance, "
        "(SELECT COALESCE(SUM(delta), 0) FROM ledger l WHERE l.\"user\" = u.telegram_id) AS lsum, "
        "(SELECT COUNT(*) FROM ledger l WHERE l.\"user\" = u.telegram_id AND reason = 'free') "
        "AS frees, "
        "(SELECT COALESCE(SUM(credits), 0) FROM payments p WHERE p.\"user\" = u.telegram_id "
        "AND status = 'paid') AS bought, "
        "(SELECT COALESCE(SUM(charged), 0) FROM generations g WHERE g.\"user\" = u.telegram_id) "
        "AS spent, "
        "(SELECT COALESCE(SUM(charged), 0) FROM generations g WHERE g.\"user\" = u.telegram_id "
        "AND refunded) AS refunds FROM users u"
    )
    inv("balance == ledger sum", sum(1 for r in rows if r["balance"] != r["lsum"]))
    formula = [r for r in rows if r["balance"] != free + r["bought"] - r["spent"] + r["refunds"]]
    inv("balance == free + bought - spent + refunds", len(formula),
        ", ".join(f"user {r['uid']}: {r['balance']} vs {free}+{r['bought']}-{r['spent']}"
                  f"+{r['refunds']}" for r in formula[:4]))  # fmt: skip
    inv("free credits given once", sum(1 for r in rows if r["frees"] != (1 if free else 0)))
    inv("balance never negative", sum(1 for r in rows if r["balance"] < 0))

    per_gen = await db.fetch(
        "SELECT g.id, g.refunded, "
        "COUNT(*) FILTER (WHERE l.reason = 'generation') AS takes, "
        "COUNT(*) FILTER (WHERE l.reason = 'refund') AS gives "
        "FROM generations g LEFT JOIN ledger l ON l.generation = g.id GROUP BY g.id"
    )
    inv("one charge per generation", sum(1 for r in per_gen if r["takes"] != 1))
    inv("one refund per refunded generation (none otherwise)",
        sum(1 for r in per_gen if r["gives"] != (1 if r["refunded"] else 0)))  # fmt: skip

    payments = {r["telegram_payment_charge_id"]: r for r in await db.fetch(
        'SELECT telegram_payment_charge_id, "user", credits, status, '
        "(SELECT COUNT(*) FROM ledger l WHERE l.payment = p.id AND reason = 'purchase') "
        "AS credits_rows FROM payments p")}  # fmt: skip
    lost = [c for c in campaign.charges if c not in payments]
    twice = [c for c, r in payments.items() if r["credits_rows"] != 1]
    wrong = [
        c for c, t in campaign.charges.items()
        if c in payments and (payments[c]["credits"], payments[c]["user"]) != (t.credits, t.uid)
    ]  # fmt: skip
    unknown = [c for c in payments if c not in campaign.charges]
    report.add("charges paid by users", f"{len(campaign.charges)} "
               f"({campaign.tally.duplicates_sent} sent twice at once, "
               f"{campaign.tally.redelivered} redelivered after restarts)")  # fmt: skip
    inv("every charge credited", len(lost), ", ".join(lost[:3]))
    inv("no charge credited twice", len(twice), ", ".join(twice[:3]))
    inv("charge credited with its order's credits", len(wrong), ", ".join(wrong[:3]))
    inv("no payment nobody made", len(unknown))

    referenced = {g["prediction_id"] for g in gens if g["prediction_id"]}
    created = set(replicate.predictions)
    orphans = created - referenced
    report.add("predictions created / in generation rows",
               f"{len(created)} / {len(referenced)}")  # fmt: skip
    # Which stop each orphan fell to: the first one after the prediction was created.
    fell_to: Counter[str] = Counter()
    for pid in orphans:
        created_at = replicate.predictions[pid].created
        after = [kind for at, kind in campaign.stops if at >= created_at]
        fell_to[after[0] if after else "no stop"] += 1
    inv("no prediction created twice for one generation (orphan predictions)", len(orphans),
        ", ".join(f"{n} at a {k}" for k, n in fell_to.most_common()))  # fmt: skip
    edits = len([r for r in openai.requests if r.op == "images.edit"])
    composed = sum(1 for g in gens if g["combined_key"])
    report.add("image edits paid / generations with a combined image", f"{edits} / {composed}")

    stuck = await db.fetch(
        'SELECT s."user", s.data FROM user_sessions s WHERE s.state = \'processing\''
    )
    inv("users stuck in PROCESSING after the final settle", len(stuck),
        ", ".join(str(r["user"]) for r in stuck[:5]))  # fmt: skip
    seen = campaign.tally.stuck_seen
    inv("users found stuck in PROCESSING during the campaign (had to /cancel)", len(seen),
        ", ".join(f"user {u} gen {g}" for u, g in seen[:5]))  # fmt: skip
    inv("/cancel of a finished video said 'your credit is back' (no refund made)",
        campaign.tally.cancel_said_refunded)  # fmt: skip
    violations = len(openai.violations) + len(replicate.violations)
    inv("provider requests that broke the API spec", violations)


# ---- main --------------------------------------------------------------------------------------
async def main(args: argparse.Namespace) -> None:
    quiet_logging()
    header("bench.faults", f"kills={args.kills} users={args.users} seed={args.seed}")
    report = Report("bench.faults")
    started = time.perf_counter()
    replicate = WatchedReplicate(api_token=REPLICATE_TOKEN, start_delay=args.start_delay,
                                 run_time=args.run_time, models={VIDEO_MODEL})  # fmt: skip
    async with (
        services(args.database_url) as svc,
        FakeOpenAI(api_key=OPENAI_KEY, models={"gpt-image-1"}) as openai,
        replicate,
        svc.storage() as storage,
    ):
        rng = random.Random(args.seed + 1)
        # Slow provider calls make the windows a kill can fall into as wide as real ones are.
        openai.script("images.edit", *[
            Fault.moderation_blocked().after(args.image_latency)
            if rng.random() < args.fail_rate else Fault.latency(args.image_latency)
            for _ in range(20_000)
        ])  # fmt: skip
        replicate.script("predictions.create", *[
            Fault.prediction_fails().after(args.create_latency)
            if rng.random() < args.fail_rate else Fault.latency(args.create_latency)
            for _ in range(20_000)
        ])  # fmt: skip
        await storage.put("warm-up", b"warm", "text/plain")
        cfg = {
            "data_dir": str(svc.tmp / "flick"),
            "database_url": svc.database_url,
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
        print(f"  database: {svc.database_kind}; child log: {svc.tmp / 'child.log'}")
        campaign = Campaign(args, svc, cfg)
        replicate.created = campaign.moments["prediction"]
        replicate.reply_latency = args.reply_latency
        cfg["uids"] = [u.uid for u in campaign.users]
        campaign.db = await asyncpg.create_pool(svc.database_url, min_size=2, max_size=8)
        try:
            await campaign.start_child()
            lives = [asyncio.create_task(campaign.life(u)) for u in campaign.users]
            await campaign.killer()
            took = time.perf_counter() - started
            print(f"  {campaign.kills + campaign.terms} stops done after {took:.0f} s; "
                  "settling (no more stops)")  # fmt: skip
            _, pending = await asyncio.wait(lives, timeout=args.settle)
            campaign.closing = True
            for task in pending:
                task.cancel()
            await asyncio.gather(*lives, return_exceptions=True)
            await wait_generations(campaign, args.settle)
            # One last restart, as after any deploy: what is stuck now stays stuck.
            await campaign.stop_child()
            await campaign.start_child()
            await campaign.redeliver()
            await wait_generations(campaign, args.settle)
            await asyncio.sleep(2.0)
            await campaign.stop_child()
            done = sum(u.done for u in campaign.users)
            aimed = ", ".join(f"{k} {v}" for k, v in sorted(campaign.aimed.items()))
            stops = campaign.kills + campaign.terms
            report.add("stops survived (SIGKILL + SIGTERM)", f"{stops} ({aimed})",
                       f"{args.kills}", stops >= args.kills)  # fmt: skip
            report.add("videos users got / wanted", f"{done} / {args.users * args.videos}")
            await check(campaign, openai, replicate, report)
        finally:
            with contextlib.suppress(Exception):
                await campaign.kill_child()
            await campaign.db.close()
            errors = _errors(campaign.log_path)
            if errors:
                report.note(f"child log: {sum(errors.values())} ERROR line(s), kept as "
                            f"{_keep(campaign.log_path)}; most common:")  # fmt: skip
                for line, n in errors.most_common(6):
                    print(f"    {n:>4} × {line}")
    report.note(f"campaign took {time.perf_counter() - started:.0f} s")
    report.print_summary()


async def wait_generations(campaign: Campaign, seconds: float) -> None:
    assert campaign.db is not None
    db = campaign.db

    async def none_open() -> bool:
        return not await db.fetchval(
            "SELECT COUNT(*) FROM generations WHERE status <> 'done' AND NOT refunded"
        )

    await campaign.until(none_open, seconds, step=0.2)


def _errors(path: Path) -> Counter[str]:
    """ERROR lines by message; a bare traceback (one printed outside the logger) by its
    exception line, the one that says what went wrong."""
    found: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if " ERROR " in line:
                found[line.split(": ", 1)[-1][:140]] += 1
            elif line.startswith("Traceback"):
                ends = (x for x in lines[i + 1 :] if x and not x[0].isspace())
                found["traceback: " + next(ends, "(cut off)")[:128]] += 1
    return found


def _keep(path: Path) -> Path | None:
    """A copy of the child's log outside the bench's temporary directory, which goes away."""
    kept = Path(tempfile.gettempdir()) / f"flick-faults-child-{os.getpid()}.log"
    with contextlib.suppress(OSError):
        shutil.copyfile(path, kept)
        return kept
    return None


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.faults", description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=24, help="stops: SIGKILL or SIGTERM (24)")
    p.add_argument("--users", type=int, default=30, help="users (30)")
    p.add_argument("--videos", type=int, default=3, help="videos each user wants (3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--uptime", type=float, nargs=2, default=(0.5, 3.5), metavar=("MIN", "MAX"),
                   help="seconds Flick runs between kills, uniform (0.5 3.5)")  # fmt: skip
    p.add_argument("--duplicate-rate", type=float, default=0.3,
                   help="payments sent twice at once (0.3)")  # fmt: skip
    p.add_argument("--cancel-rate", type=float, default=0.05, help="videos /cancelled (0.05)")
    p.add_argument("--fail-rate", type=float, default=0.08,
                   help="provider calls that fail for good (0.08)")  # fmt: skip
    p.add_argument("--image-latency", type=float, default=0.4)
    p.add_argument("--create-latency", type=float, default=0.15)
    p.add_argument("--reply-latency", type=float, default=0.05,
                   help="seconds a create's answer takes to arrive (0.05)")  # fmt: skip
    p.add_argument("--start-delay", type=float, default=0.2)
    p.add_argument("--run-time", type=float, default=1.0)
    p.add_argument("--telegram-latency", type=float, default=0.03,
                   help="offline Telegram round trip, seconds (0.03)")  # fmt: skip
    p.add_argument("--ai-concurrency", type=int, default=16)
    p.add_argument("--aim", nargs="+", default=["random", "video", "prediction", "graceful"],
                   choices=["random", "video", "prediction", "graceful"],
                   help="stop moments, one picked at random per stop: random, just after a video "
                   "reached Telegram, just after a prediction was accepted, or a graceful "
                   "SIGTERM at that moment (all four)")  # fmt: skip
    p.add_argument("--generation-patience", type=float, default=90.0)
    p.add_argument("--stuck-grace", type=float, default=10.0,
                   help="seconds a finished video may leave its user 'busy' (10)")  # fmt: skip
    p.add_argument("--settle", type=float, default=60.0)
    p.add_argument("--limit", type=float, default=900.0, help="hard stop, seconds")
    add_common_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    run(main(arguments), arguments.limit)
