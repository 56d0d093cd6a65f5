"""Provider saturation, Flick's own time per generation, and memory against the video's size.

The whole engine (real PostgreSQL, real SeaweedFS, the offline Telegram through kurigram, the
real openai and replicate SDKs) against the fake providers, which run in a process of their own
(`bench.fakes`) with scripted latency. Three measurements:

1. Saturation: G generations at once through a limiter of K with provider time L per generation
   (image + prediction): generations/s against the theoretical K/L. Target ≥ 95 %.
2. Flick's own time: one generation at a time with a 10.5 MB video (over 10 MiB, so kurigram
   uploads it with upload.saveBigFilePart): time from the generation row to the video reaching
   Telegram, minus the providers' time (and the wait for the next poll, shown apart).
   Target < 150 ms. The video is downloaded to a temporary file, then uploaded to S3 and to
   Telegram at once; the generation is done once both are (that tail is shown apart).
3. Memory: peak RSS while generations with 1, 10 and 50 MB videos run; it must not grow with the
   video's size beyond a buffer (storage parts of 5 MB, upload parts of 512 KB).
4. The face check at photo intake: its time per 12-megapixel photo (the real detector, in the
   thread it runs in), for a photo with a face and for one without (two passes). Target < 50 ms.
5. Routes: Flick's own time per generation for each route of flick/routes.py, one at a time with
   a 1 MB video: compose_animate (today's `hug`) and direct (a Kling style taking both photos as
   reference images, checked against its input schema by the fake). Own time = end to end minus
   the providers' time and the wait for the next poll. Target < 100 ms.

    .venv/bin/python -m bench.pipeline                       # ~2 minutes
    .venv/bin/python -m bench.pipeline --parts routes        # only the routes' own time
    .venv/bin/python -m bench.pipeline --k 16 --generations 160
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.common import (
    Report,
    RssSampler,
    Services,
    add_common_args,
    bench_settings,
    flick_on_offline_telegram,
    header,
    jpeg,
    peak_rss_mb,
    profiled,
    quiet_logging,
    reset_peak_rss,
    rss_mb,
    run,
    services,
)
from bench.fakes import OPENAI_KEY, REPLICATE_TOKEN, VIDEO_MODEL, FakeProviders
from bench.offline import ReplyTap, use_lean_files
from flick.app import Flick
from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.pipeline.runner import PipelineConfig
from flick.testing.direct_style import styles_file
from flick.testing.telegram import OfflineTelegram

MB = 1024 * 1024
TARGET_EFFICIENCY = 0.95
TARGET_OWN_MS = 150.0
TARGET_ROUTE_MS = 100.0


class Chats:
    """The bot's messages and videos per chat, as they reach the offline Telegram."""

    def __init__(self, tap: ReplyTap) -> None:
        self.replies: dict[int, asyncio.Queue[int | None]] = {}
        self.videos: dict[int, list[float]] = {}
        self.video_sent = asyncio.Event()
        tap.on_reply = self._reply
        tap.on_media = self._media

    def _reply(self, chat: int, message_id: int | None, at: float) -> None:
        self.queue(chat).put_nowait(message_id)

    def _media(self, chat: int, message_id: int | None, at: float) -> None:
        self.videos.setdefault(chat, []).append(at)
        self.video_sent.set()

    def queue(self, chat: int) -> asyncio.Queue[int | None]:
        return self.replies.setdefault(chat, asyncio.Queue())

    async def next_message(self, chat: int, within: float = 20.0) -> int | None:
        return await asyncio.wait_for(self.queue(chat).get(), within)


class Bench:
    def __init__(self, args: argparse.Namespace, tg: OfflineTelegram, chats: Chats) -> None:
        self.args = args
        self.tg = tg
        self.chats = chats
        self.next_uid = 5_000_000
        self.photos = [jpeg((30 * i, 120, 90), (256, 320)) for i in range(2)]
        self.db: asyncpg.Pool | None = None

    async def start_generation(self, style: str = "hug") -> int:
        """One new user, from /create to their second photo; returns their id."""
        uid = await self.prepare(style)
        await self.send_photos(uid)
        return uid

    async def prepare(self, style: str = "hug") -> int:
        """One new user, from /create to the style: the bot waits for their photos."""
        uid = self.next_uid
        self.next_uid += 1
        tg, chats = self.tg, self.chats
        user = tg.user(uid, f"User{uid}")
        await tg.push(tg.command(user, "create"))
        consent = await chats.next_message(uid)
        await tg.push(tg.callback(user, "consent", message_id=consent or 1))
        picker = await chats.next_message(uid)
        await tg.push(tg.callback(user, f"style:{style}", message_id=picker or 1))
        await chats.next_message(uid)
        return uid

    async def send_photos(self, uid: int) -> None:
        tg, user = self.tg, self.tg.server.users[uid]
        await tg.push(tg.photo(user, self.photos[0], size=(256, 320)))
        await tg.push(tg.photo(user, self.photos[1], size=(256, 320)))

    async def wait_videos(self, uids: list[int], within: float) -> None:
        deadline = time.monotonic() + within
        while not all(u in self.chats.videos for u in uids) and time.monotonic() < deadline:
            self.chats.video_sent.clear()
            await self._ended_or_sent(deadline - time.monotonic())

    async def _ended_or_sent(self, left: float) -> None:
        # A failed generation sends no video: look at the database now and then too.
        with suppress(TimeoutError):
            await asyncio.wait_for(self.chats.video_sent.wait(), min(1.0, max(0.01, left)))

    async def recorded(self, uids: list[int], within: float = 10.0) -> list[asyncpg.Record]:
        """The users' generation rows, once each has ended (the video reaches Telegram a moment
        before its row says done)."""
        deadline = time.monotonic() + within
        while True:
            rows = await self.rows(uids)
            ended = all(r["status"] == "done" or r["refunded"] for r in rows)
            if (ended and len(rows) >= len(uids)) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.02)

    async def rows(self, uids: list[int]) -> list[asyncpg.Record]:
        assert self.db is not None
        return list(
            await self.db.fetch(
                'SELECT id, "user", status, refunded, prediction_id, created_at, finished_at '
                'FROM generations WHERE "user" = ANY($1::bigint[]) ORDER BY id',
                uids,
            )
        )


@asynccontextmanager
async def flick(
    svc: Services, tg: OfflineTelegram, fakes: FakeProviders, args: argparse.Namespace
) -> AsyncIterator[Flick]:
    data_dir = svc.tmp / "flick"
    # The built-in styles plus one on the direct route (flick/styles.toml has none).
    styles = styles_file(svc.tmp / "styles.toml")
    settings = bench_settings(
        data_dir,
        styles_file=styles,
        ai_concurrency=args.k,
        send_rate=1e9,  # measure the pipeline, not the outbox's pacing of 30 messages/s
        image_provider="openai",
        video_provider="replicate",
    )
    pipeline = PipelineConfig(poll_interval=args.poll_interval)
    image = OpenAIImageProvider(OPENAI_KEY, base_url=fakes.openai_url)
    video = ReplicateVideoProvider(REPLICATE_TOKEN, model=VIDEO_MODEL, base_url=fakes.replicate_url)
    async with flick_on_offline_telegram(
        svc, tg.client, settings, image=image, video=video, pipeline=pipeline
    ) as app:
        yield app


# ---- 1. saturation -----------------------------------------------------------------------------
async def saturation(b: Bench, fakes: FakeProviders, report: Report) -> None:
    args = b.args
    await fakes.set_output_bytes(args.saturation_video_mb * MB)
    await fakes.set_latency(args.image_latency, args.start_delay, args.run_time)
    g = args.generations
    print(
        f"-- saturation: {g} generations, K={args.k}, image {args.image_latency:g} s + "
        f"prediction {args.start_delay + args.run_time:g} s, poll every {args.poll_interval:g} s"
    )
    # Everyone is at "send your photos" first, then all photos go at once: the generations
    # start together and the limiter's queue is full from the first second.
    uids = list(await asyncio.gather(*(b.prepare() for _ in range(g))))
    offset = time.time() - time.monotonic()
    with profiled(args.profile, "pipeline-saturation"):
        await asyncio.gather(*(b.send_photos(u) for u in uids))
        await b.wait_videos(uids, within=g * 10.0 / args.k + 60)
    rows = await b.recorded(uids)
    done = sorted(t for u in uids for t in b.chats.videos.get(u, [])[:1])
    stats = await fakes.stats()
    edits = [f - s for s, f, _ in stats["edits"]]
    lives = [d + r for _, d, r in stats["predictions"].values()]
    provider = statistics.mean(edits) + statistics.mean(lives) if edits and lives else float("nan")
    # Makespan: the first generation row to the last video. A limiter that never idles serves
    # G generations of L seconds each with K slots in G·L/K.
    first = min(r["created_at"].timestamp() for r in rows) - offset if rows else 0.0
    makespan = done[-1] - first if done else float("inf")
    rate = len(done) / makespan
    ideal = args.k / provider
    failed = sum(1 for r in rows if r["status"] != "done")
    report.add("saturation: generations delivered", f"{len(done)} of {g} ({failed} not done)")
    report.add("saturation: provider time per generation",
               f"{provider:.2f} s (image {statistics.mean(edits):.2f} + prediction "
               f"{statistics.mean(lives):.2f})")  # fmt: skip
    report.add("saturation: generations/s (G / makespan)",
               f"{rate:.2f} /s ({len(done)} in {makespan:.1f} s)")  # fmt: skip
    report.add(
        "saturation: vs theoretical K/L",
        f"{rate / ideal * 100:.1f} % of {ideal:.2f} /s",
        f"≥ {TARGET_EFFICIENCY * 100:.0f} %",
        rate / ideal >= TARGET_EFFICIENCY,
    )
    print(
        f"  AI calls in flight at most: images {stats['max_edits_in_flight']}, predictions "
        f"{stats['max_running_predictions']} (K={args.k}); polls {stats['polls']}"
    )


# ---- 2. Flick's own time -----------------------------------------------------------------------
@dataclass
class Timeline:
    total: float
    provider: float
    poll_wait: float
    before_image: float  # row written → images.edit sent
    image_to_prediction: float  # image answered → prediction created
    download: float  # prediction seen done → video in the temporary file
    deliver: float  # downloaded → the video at Telegram (the S3 copy runs alongside)
    storage_tail: float  # the video at Telegram → the row done (S3 copy still running)

    @property
    def own(self) -> float:
        return self.total - self.provider - self.poll_wait


async def own_time(b: Bench, fakes: FakeProviders, report: Report) -> None:
    args = b.args
    size = int(args.video_mb * MB)
    await fakes.set_output_bytes(size)
    await fakes.set_latency(0.3, 0.05, 0.3)
    print(f"-- Flick's own time: {args.samples} generations one at a time, {size / MB:.1f} MB "
          "video (upload.saveBigFilePart)")  # fmt: skip
    offset = time.time() - time.monotonic()
    timelines: list[Timeline] = []
    with profiled(args.profile, "pipeline-own-time"):
        for _ in range(args.samples):
            uid = await b.start_generation()
            await b.wait_videos([uid], within=60)
            (row,) = await b.recorded([uid])
            if row["status"] != "done" or uid not in b.chats.videos:
                report.note(f"generation {row['id']} ended {row['status']}")
                continue
            stats = await fakes.stats()
            timelines.append(_timeline(row, stats, b.chats.videos[uid][0], offset))
    if not timelines:
        report.add("own time per generation", "no generation finished", f"< {TARGET_OWN_MS:g} ms",
                   False)  # fmt: skip
        return

    def ms(seconds: list[float]) -> float:
        return statistics.median(seconds) * 1000

    own = ms([t.own for t in timelines])
    report.add(f"own time per generation ({size / MB:.1f} MB video)",
               f"{own:.0f} ms median (max {max(t.own for t in timelines) * 1000:.0f})",
               f"< {TARGET_OWN_MS:g} ms", own < TARGET_OWN_MS)  # fmt: skip
    report.add("  of which: row → image request",
               f"{ms([t.before_image for t in timelines]):.0f} ms")  # fmt: skip
    report.add("  of which: image → prediction created",
               f"{ms([t.image_to_prediction for t in timelines]):.0f} ms")  # fmt: skip
    report.add("  of which: video download → temporary file",
               f"{ms([t.download for t in timelines]):.0f} ms")  # fmt: skip
    report.add("  of which: temporary file → Telegram (S3 upload alongside)",
               f"{ms([t.deliver for t in timelines]):.0f} ms")  # fmt: skip
    report.add("video at Telegram → generation done (S3 copy; not counted above)",
               f"{ms([t.storage_tail for t in timelines]):.0f} ms median")  # fmt: skip
    report.add("waiting for the next poll (not counted above)",
               f"{ms([t.poll_wait for t in timelines]):.0f} ms median; poll interval "
               f"{args.poll_interval:g} s")  # fmt: skip
    total, provider = ms([t.total for t in timelines]), ms([t.provider for t in timelines])
    report.add("end to end / providers", f"{total:.0f} / {provider:.0f} ms")


def _timeline(row: Any, stats: dict[str, Any], delivered: float, offset: float) -> Timeline:
    start = row["created_at"].timestamp() - offset
    pid = row["prediction_id"]
    created, delay, run_time = stats["predictions"][pid]
    done = created + delay + run_time
    edit_s, edit_f, _ = max((e for e in stats["edits"] if e[0] >= start - 0.05), key=lambda e: e[0])
    out = [o for o in stats["outputs"] if o[0] == pid]
    out_start = out[-1][1] if out else done
    finished = row["finished_at"].timestamp() - offset if row["finished_at"] else delivered
    # The video is in the temporary file when the fake has written its last byte, close enough
    # from the outside.
    downloaded = out[-1][2] if out else done
    # The poll that saw the prediction done came up to one poll interval after it was done;
    # what Flick did from there on is its own.
    poll_wait = max(0.0, out_start - done - 0.002)
    return Timeline(
        total=delivered - start,
        provider=(edit_f - edit_s) + (done - created),
        poll_wait=poll_wait,
        before_image=edit_s - start,
        image_to_prediction=created - edit_f,
        download=downloaded - done - poll_wait,
        deliver=delivered - downloaded,
        storage_tail=max(0.0, finished - delivered),
    )


# ---- 4. each route's own time -------------------------------------------------------------------
async def routes(b: Bench, fakes: FakeProviders, report: Report) -> None:
    args = b.args
    size = int(args.route_video_mb * MB)
    await fakes.set_output_bytes(size)
    await fakes.set_latency(0.3, 0.05, 0.3)
    print(f"-- routes: {args.samples} generations per route, one at a time, "
          f"{size / MB:.1f} MB video")  # fmt: skip
    offset = time.time() - time.monotonic()
    for style, route in (("hug", "compose_animate"), ("together", "direct")):
        owns: list[float] = []
        with profiled(args.profile, f"pipeline-route-{route}"):
            for _ in range(args.samples):
                uid = await b.start_generation(style)
                await b.wait_videos([uid], within=60)
                (row,) = await b.recorded([uid])
                if row["status"] != "done" or uid not in b.chats.videos:
                    report.note(f"{route}: generation {row['id']} ended {row['status']}")
                    continue
                stats = await fakes.stats()
                owns.append(_own(row, stats, b.chats.videos[uid][0], offset, route))
        if not owns:
            report.add(f"routes: own time, {route}", "no generation finished",
                       f"< {TARGET_ROUTE_MS:g} ms", False)  # fmt: skip
            continue
        own = statistics.median(owns) * 1000
        report.add(
            f"routes: own time per generation, {route} ({size / MB:.0f} MB video)",
            f"{own:.0f} ms median (max {max(owns) * 1000:.0f})",
            f"< {TARGET_ROUTE_MS:g} ms",
            own < TARGET_ROUTE_MS,
        )


def _own(row: Any, stats: dict[str, Any], delivered: float, offset: float, route: str) -> float:
    """End to end minus the providers' time (the image, if composed; the prediction) and the
    wait for the poll that saw the prediction done."""
    start = row["created_at"].timestamp() - offset
    created, delay, run_time = stats["predictions"][row["prediction_id"]]
    done = created + delay + run_time
    provider = done - created
    if route == "compose_animate":
        edit_s, edit_f, _ = max(
            (e for e in stats["edits"] if e[0] >= start - 0.05), key=lambda e: e[0]
        )
        provider += edit_f - edit_s
    out = [o for o in stats["outputs"] if o[0] == row["prediction_id"]]
    poll_wait = max(0.0, (out[-1][1] if out else done) - done - 0.002)
    return float(delivered - start - provider - poll_wait)


# ---- 3. memory against the video's size --------------------------------------------------------
async def memory(b: Bench, fakes: FakeProviders, report: Report) -> None:
    args = b.args
    await fakes.set_latency(0.1, 0.05, 0.2)
    peaks: dict[int, float] = {}
    for mb in args.sizes:
        await fakes.set_output_bytes(mb * MB)
        # Settle the allocator first, so each size starts from the same floor.
        await asyncio.sleep(0.5)
        floor = rss_mb()
        reset_peak_rss()
        with RssSampler(0.02) as sampler:
            uids = list(await asyncio.gather(*(b.start_generation() for _ in range(args.parallel))))
            await b.wait_videos(uids, within=120)
        peak = max(peak_rss_mb(), sampler.peak)
        peaks[mb] = peak - floor
        delivered = sum(1 for u in uids if u in b.chats.videos)
        report.add(
            f"memory: {args.parallel} × {mb} MB videos at once",
            f"peak +{peak - floor:.0f} MB over {floor:.0f} MB ({delivered} delivered)",
        )
    small, large = peaks[min(peaks)], peaks[max(peaks)]
    growth = large - small
    per_video = growth / args.parallel
    bound = args.buffer_mb
    report.add(
        f"memory growth {min(peaks)} → {max(peaks)} MB videos",
        f"{growth:+.0f} MB ({per_video:+.0f} MB per video in flight)",
        f"≤ {bound:g} MB per video",
        per_video <= bound,
    )


TARGET_FACE_MS = 50.0


async def face_check(args: argparse.Namespace, report: Report) -> None:
    """The real detector on 12-megapixel JPEGs made from scikit-image's sample photos."""
    from flick.pipeline.faces import HaarFaceDetector

    with HaarFaceDetector() as detector:
        await _face_check(detector, args, report)


async def _face_check(detector: Any, args: argparse.Namespace, report: Report) -> None:
    from flick.pipeline.faces import check
    from flick.pipeline.imaging import PhotoRejected
    from flick.testing import sample_faces

    photos = {
        "a face": sample_faces.large(sample_faces.astronaut()),
        "no face (second, finer pass)": sample_faces.large(sample_faces.no_face()),
    }
    print(f"-- the face check: {args.face_samples} checks per 12-megapixel photo, one at a time")
    for what, photo in photos.items():
        with suppress(PhotoRejected):
            await check(detector, photo)  # warm: the thread's classifier is loaded once
        wall, cpu = [], []
        for _ in range(args.face_samples):
            started = time.perf_counter()
            faces = await asyncio.to_thread(_timed_faces, detector, photo)
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append(faces * 1000)
        median = statistics.median(wall)
        report.add(f"face check, {what}", f"median {median:.1f} ms, max {max(wall):.1f} ms",
                   f"< {TARGET_FACE_MS:g} ms", median < TARGET_FACE_MS)  # fmt: skip
        report.add("  CPU (both of the detector's threads)",
                   f"median {statistics.median(cpu):.1f} ms")  # fmt: skip


def _timed_faces(detector: Any, jpeg: bytes) -> float:
    """The CPU one check takes, in all the detector's threads: the process's CPU time (one
    check at a time, the event loop idle meanwhile)."""
    started = time.process_time()
    detector.faces(jpeg)
    return time.process_time() - started


async def main(args: argparse.Namespace) -> None:
    quiet_logging()
    header("bench.pipeline", f"K={args.k}")
    report = Report("bench.pipeline")
    if args.profile is not None:
        report.note("profiling: the profiler slows the measured phases; take the figures "
                    "from a run without --profile")  # fmt: skip
    if "faces" in args.parts:
        await face_check(args, report)
        if args.parts == ["faces"]:
            report.print_summary()
            return
    async with (
        services(args.database_url) as svc,
        FakeProviders() as fakes,
        OfflineTelegram() as tg,
    ):
        print(f"  database: {svc.database_kind}; storage: SeaweedFS {svc.seaweed.endpoint}")
        use_lean_files(tg)
        chats = Chats(ReplyTap(tg, last_only=False, clock=time.monotonic))
        b = Bench(args, tg, chats)
        async with flick(svc, tg, fakes, args) as _app:
            b.db = await asyncpg.create_pool(svc.database_url, min_size=1, max_size=4)
            try:
                if "saturation" in args.parts:
                    await saturation(b, fakes, report)
                if "own" in args.parts:
                    await own_time(b, fakes, report)
                if "memory" in args.parts:
                    await memory(b, fakes, report)
                if "routes" in args.parts:
                    await routes(b, fakes, report)
            finally:
                await b.db.close()
    report.print_summary()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--k", type=int, default=8, help="AI_CONCURRENCY (8)")
    p.add_argument("--generations", type=int, default=64, help="saturation: generations (64)")
    p.add_argument("--image-latency", type=float, default=1.0, help="saturation: images.edit s")
    p.add_argument("--start-delay", type=float, default=0.3, help="saturation: starting s")
    p.add_argument("--run-time", type=float, default=2.7, help="saturation: processing s")
    p.add_argument("--saturation-video-mb", type=int, default=1)
    p.add_argument("--poll-interval", type=float, default=0.1,
                   help="seconds between prediction polls (production: 2)")  # fmt: skip
    p.add_argument("--samples", type=int, default=5, help="own time: generations (5)")
    p.add_argument("--video-mb", type=float, default=10.5, help="own time: video size (10.5)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50], help="memory: MB")
    p.add_argument("--parallel", type=int, default=3, help="memory: generations at once (3)")
    p.add_argument("--buffer-mb", type=float, default=16.0,
                   help="memory: MB allowed per video in flight (16)")  # fmt: skip
    p.add_argument("--face-samples", type=int, default=20, help="faces: checks per photo (20)")
    p.add_argument("--route-video-mb", type=float, default=1.0, help="routes: video size (1)")
    p.add_argument("--parts", nargs="+", default=["saturation", "own", "memory", "faces", "routes"],
                   choices=["saturation", "own", "memory", "faces", "routes"])  # fmt: skip
    p.add_argument("--limit", type=float, default=600.0, help="hard stop, seconds")
    add_common_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    run(main(arguments), arguments.limit)
