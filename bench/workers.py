"""Generations per second with 1, 2 and 4 `flick worker` processes behind one gateway (issue #18).

One gateway, the engine in this process with GATEWAY_GENERATES=false and an outbox that reads
each video back from S3 as the Telegram gateway does before sending it (and keeps nothing); one
PostgreSQL (embedded by default) and one SeaweedFS; N children running `python -m flick worker`
with the gateway's settings. The providers are fakes in a process of their own
(`bench.capped_fakes`) with a fixed latency (compose, prediction) and a bandwidth cap per host:
each worker downloads its videos from a Replicate of its own whose output leaves at most CAP
bytes/s however many downloads share it. Production's poll interval (2 s) and budgets.

Each run hands over G = PER_WORKER × N generations at once (the same work per worker, so the
fixed ramp of the first compose and prediction weighs alike in every run) and measures, from the
database, the first hand-over (generations.created_at, written in the charge's transaction with
the job) to the last delivery (finished_at). Scaling efficiency: rate_N / (N × rate_1), with
AI_CONCURRENCY far above the load; one more run with N=4 and a small AI_CONCURRENCY shows the
plateau of the global AI bound; one run of the single-process default (`flick run` generating
itself, no worker) on the 1-worker load, with the same cap on its host.

    .venv/bin/python -m bench.workers                            # ~4 minutes
    .venv/bin/python -m bench.workers --workers 1 2 --per-worker 6 --skip-bound --skip-single

Target (issue #18): efficiency ≥ 0.85 at 4 workers while the AI bound does not bind.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from bench.capped_fakes import CappedProviders
from bench.common import (
    Report,
    add_common_args,
    bench_settings,
    header,
    jpeg,
    quiet_logging,
    run,
    services,
)
from bench.fakes import OPENAI_KEY, REPLICATE_TOKEN, VIDEO_MODEL
from bench.worker_hosts import Shared, WorkerChild, workers
from bench.worker_load import Load, S3ReadingOutbox
from flick.app import Flick
from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.settings import Settings
from flick.storage import S3Storage

MB = 1024 * 1024
POLL = 2.0  # seconds: production's prediction poll interval (PipelineConfig), the workers' too
TARGET_EFFICIENCY = 0.85


@dataclass
class Measured:
    label: str
    workers: int
    k: int
    handed: int
    done: int
    seconds: float
    spread: float  # first hand-over → last hand-over
    gateway_cpu: float  # CPU seconds of this process (the gateway and the load) in the run
    reads: list[float]  # the gateway's read of each video back from S3, seconds
    fakes_cpu: float  # CPU seconds of the fake providers' process in the run
    downloads: list[list[tuple[float, float]]]  # per host: (start, end) s after the load began
    # Per generation a worker ran: hand-over → handed back (the worker's part), handed back →
    # the gateway sending (the settle job's wait and pickup), sending → done (the gateway).
    parts: list[tuple[float, float, float]]
    load: tuple[float, float]  # 1-minute load average before, after
    worker_cpu: list[float]  # CPU seconds each worker used in the run
    taken: list[int]  # generations each worker took

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def gateway_settings(data_dir: Path, k: int, generates: bool) -> Settings:
    """The gateway's settings (a worker's env says the same: the same configuration version)."""
    return bench_settings(
        data_dir,
        ai_concurrency=k,
        image_provider="openai",
        video_provider="replicate",
        gateway_generates=generates,
    )


@asynccontextmanager
async def gateway(
    shared: Shared, storage: S3Storage, k: int, generates: bool
) -> AsyncIterator[Load]:
    """The engine as `flick run` wires it, on an outbox that reads videos back from S3; when it
    generates itself it downloads through host 0's capped Replicate."""
    settings = gateway_settings(shared.tmp / ("single" if generates else "gateway"), k, generates)
    image = OpenAIImageProvider(OPENAI_KEY, base_url=shared.openai_url)
    video = ReplicateVideoProvider(
        REPLICATE_TOKEN, model=VIDEO_MODEL, base_url=shared.replicate_urls[0]
    )
    outbox = S3ReadingOutbox(jpeg((150, 60, 200), (320, 400)), storage)
    async with Flick(
        settings, outbox, image=image, video=video, database_url=shared.database_url,
        storage=storage, lock=False, resume=False,
    ) as app:  # fmt: skip
        yield Load(app, outbox)
        await app.supervisor.stop(drain_seconds=5)


async def measure(
    label: str,
    load: Load,
    fakes: CappedProviders,
    db: asyncpg.Pool,
    children: list[WorkerChild],
    g: int,
    k: int,
    within: float,
) -> Measured:
    before = os.getloadavg()[0]
    cpu0 = [c.cpu() for c in children]
    taken0 = [c.taken() for c in children]
    me = psutil.Process()
    own0 = sum(me.cpu_times()[:2])
    outbox = load.driver.outbox
    assert isinstance(outbox, S3ReadingOutbox)
    outbox.read_seconds.clear()
    fakes_cpu0 = (await fakes.stats())["cpu"]
    began = time.monotonic()
    async with asyncio.timeout(within):
        uids = await load.hand_over(g)
    rows = await load.ended(db, uids, within)
    done = [r for r in rows if r["status"] == "done" and r["finished_at"] is not None]
    seconds = spread = 0.0
    if done:
        first = min(r["created_at"] for r in rows)
        seconds = (max(r["finished_at"] for r in done) - first).total_seconds()
        spread = (max(r["created_at"] for r in rows) - first).total_seconds()
    after = await fakes.stats()
    back: dict[int, float] = {}
    for child in children:
        back.update(child.handed_back())
    parts = [
        (b - r["created_at"].timestamp(), s - b, r["finished_at"].timestamp() - s)
        for r in done
        if (b := back.get(r["id"])) is not None and (s := outbox.sending.get(r["user"]))
    ]
    downloads = [
        [(a - began, b - began) for a, b in host if a >= began] for host in after["outputs"]
    ]
    return Measured(
        label, len(children), k, len(rows), len(done), seconds, spread,
        sum(me.cpu_times()[:2]) - own0, list(outbox.read_seconds),
        after["cpu"] - fakes_cpu0, downloads, parts,
        (before, os.getloadavg()[0]),
        [c.cpu() - c0 for c, c0 in zip(children, cpu0, strict=True)],
        [c.taken() - t0 for c, t0 in zip(children, taken0, strict=True)],
    )  # fmt: skip


def show(m: Measured, report: Report, ideal: float, video_seconds: float) -> None:
    cpu = "/".join(f"{c:.1f}" for c in m.worker_cpu) or "-"
    taken = "/".join(str(t) for t in m.taken) or "-"
    report.add(
        f"{m.label}",
        f"{m.rate:.2f} gen/s ({m.done}/{m.handed} in {m.seconds:.1f} s)",
        f"ideal {ideal:.2f}",
    )
    reads = (f"; S3 read-back per video p50 {statistics.median(m.reads) * 1000:.0f} ms, "
             f"max {max(m.reads) * 1000:.0f}" if m.reads else "")  # fmt: skip
    print(f"    hand-overs within {m.spread:.2f} s; load {m.load[0]:.1f} → {m.load[1]:.1f}; "
          f"generations taken {taken}; CPU s: workers {cpu}, gateway+load "
          f"{m.gateway_cpu:.1f}, fakes {m.fakes_cpu:.1f}{reads}")  # fmt: skip
    used = [h for h in m.downloads if h]
    if used and m.seconds:
        # A host's link is busy video_seconds per video; the rest of the run it waited.
        busy = "/".join(f"{len(h) * video_seconds / m.seconds * 100:.0f}" for h in used)
        first = min(a for h in used for a, _ in h)
        last = max(b for h in used for _, b in h)
        print(f"    links busy % of the run {busy}; downloads from {first:.1f} s to {last:.1f} s "
              "after the load began")  # fmt: skip
    if m.parts:

        def p50_max(i: int) -> str:
            values = [p[i] for p in m.parts]
            return f"{statistics.median(values):.2f}/{max(values):.2f}"

        print(f"    per generation, p50/max s: hand-over → worker handed back {p50_max(0)}; "
              f"→ gateway sending {p50_max(1)}; → done {p50_max(2)}")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    quiet_logging()
    header("bench.workers", f"cap={args.cap_mb:g} MB/s per host video={args.video_mb:g} MB")
    report = Report("bench.workers")
    size, cap = int(args.video_mb * MB), args.cap_mb * MB
    # The ideal run: every generation composed and predicted at once (the first poll sees the
    # prediction done), then each host's link busy until its share of the videos is through.
    ramp = args.image_latency + math.ceil(args.run_time / POLL) * POLL
    per_host = args.per_worker / (ramp + args.per_worker * size / cap)
    hosts = max([*args.workers, 1])
    print(
        f"  providers: compose {args.image_latency:g} s, prediction {args.run_time:g} s "
        f"(polled every 2 s); {args.per_worker} generations per worker, handed over at once; "
        f"WORKER_MAX_GENERATIONS={args.worker_max}"
    )
    print(f"  ideal: G / (compose + first poll after the prediction + G × video / cap), "
          f"{per_host:.2f} gen/s per host; under the AI bound K / (compose + first poll + "
          "video / cap)")  # fmt: skip
    async with AsyncExitStack() as stack:
        svc = await stack.enter_async_context(services(args.database_url))
        capped = CappedProviders(
            hosts, image_latency=args.image_latency, start_delay=0.0,
            run_time=args.run_time, output_bytes=size, cap=cap,
        )  # fmt: skip
        fakes = await stack.enter_async_context(capped)
        storage = await stack.enter_async_context(svc.storage())
        await storage.put("warm-up", b"warm", "text/plain")  # SeaweedFS makes volumes lazily
        db = await asyncpg.create_pool(svc.database_url, min_size=1, max_size=2)
        stack.push_async_callback(db.close)
        print(f"  database: {svc.database_kind}; storage: SeaweedFS {svc.seaweed.endpoint}")
        seaweed = svc.seaweed
        shared = Shared(
            svc.database_url, seaweed.endpoint, seaweed.access_key, seaweed.secret_key,
            storage.bucket, fakes.openai_url, fakes.replicate_urls, svc.tmp,
        )  # fmt: skip
        results: dict[str, Measured] = {}
        job = ramp + size / cap  # seconds a generation holds its AI seat, at best
        async with gateway(shared, storage, args.k, generates=False) as load:
            runs = [(n, args.k) for n in args.workers]
            if not args.skip_bound:
                runs.append((max(args.workers), args.bound_k))
            for n, k in runs:
                label = f"{n} worker(s), AI_CONCURRENCY={k}"
                g = args.per_worker * n
                within = 3 * max(args.per_worker * size / cap, g * job / k) + 60
                async with workers(n, shared, k, args.worker_max) as children:
                    m = await measure(label, load, fakes, db, children, g, k, within)
                results[label] = m
                show(m, report, min(n * per_host, k / job), size / cap)
        if not args.skip_single:
            async with gateway(shared, storage, args.k, generates=True) as load:
                m = await measure(
                    f"single process (no worker), AI_CONCURRENCY={args.k}",
                    load, fakes, db, [], args.per_worker, args.k,
                    3 * args.per_worker * size / cap + 60,
                )  # fmt: skip
            show(m, report, per_host, size / cap)
            results["single"] = m
        violations = (await fakes.stats())["violations"]
        if violations:
            report.note(f"provider spec violations: {violations}")
    one = next((m for m in results.values() if m.workers == 1 and m.k == args.k), None)
    for m in results.values():
        if one is None or m.workers < 2:
            continue
        eff = m.rate / (m.workers * one.rate) if one.rate else 0.0
        bound = m.k < args.k
        report.add(
            f"efficiency, {m.label}",
            f"{eff:.2f}",
            "(AI bound binds)" if bound else f"≥ {TARGET_EFFICIENCY}",
            None if bound else eff >= TARGET_EFFICIENCY,
        )
    report.print_summary()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.workers", description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="runs (1 2 4)")
    p.add_argument("--per-worker", type=int, default=12, help="generations per worker (12)")
    p.add_argument("--k", type=int, default=200, help="AI_CONCURRENCY that does not bind (200)")
    p.add_argument("--bound-k", type=int, default=4, help="AI_CONCURRENCY of the plateau run (4)")
    p.add_argument("--image-latency", type=float, default=0.5, help="compose seconds (0.5)")
    p.add_argument("--run-time", type=float, default=2.0, help="prediction seconds (2)")
    p.add_argument("--video-mb", type=float, default=4.0, help="video size, MB (4)")
    p.add_argument("--cap-mb", type=float, default=4.0, help="MB/s per host's downloads (4)")
    p.add_argument("--worker-max", type=int, default=None, metavar="M",
                   help="WORKER_MAX_GENERATIONS of each worker (default: --per-worker, what its "
                        "link is given; 0: no bound)")  # fmt: skip
    p.add_argument("--skip-bound", action="store_true", help="no plateau run")
    p.add_argument("--skip-single", action="store_true", help="no single-process run")
    p.add_argument("--limit", type=float, default=900.0, help="hard stop, seconds")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.worker_max is None:
        args.worker_max = args.per_worker
    if args.worker_max == 1:
        p.error("--worker-max: 0 (no bound) or at least 2")
    if args.database_url is None:
        args.database_url = "embedded"  # every run the same: no machine server's other load
    return args


if __name__ == "__main__":
    arguments = parse()
    run(main(arguments), arguments.limit)
