"""The fault campaign's options, its providers (scripted, watched), and reading the child's log."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import struct
import tempfile
from collections import Counter
from pathlib import Path

from aiohttp import web

from bench.common import add_common_args
from bench.fault_telegram import VIDEO_MARK
from flick.testing.fake_http import Call
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.faults import Fault

KINDS = ("kills", "terms", "outages")
SHARES = {"kills": 2, "terms": 1, "outages": 2}  # how --faults splits among unset kinds
DEFAULT_FAULTS = 24
AIMS = ("random", "video", "prediction", "payment", "photo", "tap", "cancel")


class WatchedReplicate(FakeReplicate):
    """FakeReplicate that tells the campaign the moment a prediction exists (it is billed from
    then on), whose answer then takes `reply_latency` to reach Flick, as over a network, and
    whose videos each carry their prediction's id (an MP4 `free` box, which players skip)."""

    created = asyncio.Event()
    reply_latency = 0.0

    async def _create(self, call: Call) -> web.StreamResponse:
        response = await super()._create(call)
        if response.status == 201:
            self.created.set()
            await asyncio.sleep(self.reply_latency)
        return response

    async def _output(self, call: Call) -> web.StreamResponse:
        response = await super()._output(call)
        body = response.body if isinstance(response, web.Response) else None
        if response.status != 200 or not isinstance(body, bytes):
            return response
        mark = VIDEO_MARK + call.request.match_info["id"].encode()
        box = struct.pack(">I", 8 + len(mark)) + b"free" + mark
        return web.Response(body=body + box, content_type="video/mp4")


def provider_script(args: argparse.Namespace, openai: FakeOpenAI, replicate: FakeReplicate) -> None:
    """Slow provider calls make the windows a fault can fall into as wide as real ones are; a
    few fail for good (moderation, a failed prediction), which Flick must refund."""
    rng = random.Random(args.seed + 1)
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


def errors_in(path: Path) -> Counter[str]:
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


def keep(path: Path) -> Path | None:
    """A copy of the child's log outside the bench's temporary directory, which goes away."""
    kept = Path(tempfile.gettempdir()) / f"flick-faults-child-{os.getpid()}.log"
    with contextlib.suppress(OSError):
        shutil.copyfile(path, kept)
        return kept
    return None


def mix(args: argparse.Namespace, error: str = "") -> None:
    """--kills/--terms/--outages given are counts; --faults N fills the unset ones up to N
    (2:1:2); neither: 24 faults so split."""
    given = {k: getattr(args, k) for k in KINDS if getattr(args, k) is not None}
    total = args.faults
    if total is None:
        total = sum(given.values()) if given else DEFAULT_FAULTS
    unset = [k for k in KINDS if k not in given]
    left = total - sum(given.values())
    if left < 0:
        raise SystemExit(f"bench.faults: --faults {total} is fewer than the kinds given add up to")
    if left and not unset:
        raise SystemExit("bench.faults: --faults differs from --kills + --terms + --outages")
    weights = sum(SHARES[k] for k in unset) or 1
    exact = {k: left * SHARES[k] / weights for k in unset}
    counts = {k: int(v) for k, v in exact.items()}
    # The rounding remainder goes to the kinds that lost most to it.
    for k in sorted(unset, key=lambda k: counts[k] - exact[k])[: left - sum(counts.values())]:
        counts[k] += 1
    for k in KINDS:
        setattr(args, k, given.get(k, counts.get(k, 0)))
    args.faults = total
    if args.limit is None:
        args.limit = 600.0 + 25.0 * total


def parse(doc: str | None, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.faults", description=(doc or "").split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--faults", type=int, default=None,
                   help=f"faults in all ({DEFAULT_FAULTS}); the kinds not given below share "
                   "them 2:1:2")  # fmt: skip
    p.add_argument("--kills", type=int, default=None, help="SIGKILLs")
    p.add_argument("--terms", type=int, default=None, help="SIGTERMs (graceful stops)")
    p.add_argument("--outages", type=int, default=None, help="database outages")
    p.add_argument("--outage-seconds", type=float, nargs=2, default=(1.0, 10.0),
                   metavar=("MIN", "MAX"), help="an outage's length, uniform (1 10)")  # fmt: skip
    p.add_argument("--aim", nargs="+", default=list(AIMS), choices=AIMS,
                   help="fault moments, one picked at random per fault: random, or just after a "
                   "video reached Telegram, a prediction was accepted, a payment / photo / "
                   "button tap / /cancel was sent (all)")  # fmt: skip
    p.add_argument("--redeliver-window", type=float, default=5.0,
                   help="after a restart Telegram redelivers every update since the previous "
                   "start and this many seconds before it (5)")  # fmt: skip
    p.add_argument("--payment-grace", type=float, default=10.0,
                   help="seconds a running Flick has, once its database is back, to credit a "
                   "payment it received (10)")  # fmt: skip
    p.add_argument("--users", type=int, default=30, help="users (30)")
    p.add_argument("--videos", type=int, default=3, help="videos each user wants (3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--uptime", type=float, nargs=2, default=(0.5, 3.5), metavar=("MIN", "MAX"),
                   help="seconds between faults, uniform (0.5 3.5)")  # fmt: skip
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
    p.add_argument("--generation-patience", type=float, default=90.0)
    p.add_argument("--stuck-grace", type=float, default=10.0,
                   help="seconds a finished video may leave its user 'busy' (10)")  # fmt: skip
    p.add_argument("--settle", type=float, default=60.0)
    p.add_argument("--limit", type=float, default=None,
                   help="hard stop, seconds (600 + 25 per fault)")  # fmt: skip
    add_common_args(p)
    args = p.parse_args(argv)
    mix(args)
    return args
