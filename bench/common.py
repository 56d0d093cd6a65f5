"""What every benchmark shares: real services, settings, measurements and the printed report.

Services: a fresh database on a PostgreSQL server (`--database-url`, else FLICK_TEST_DATABASE_URL,
else the machine's server on 127.0.0.1:5432 if it answers, else an embedded one) and an embedded
SeaweedFS. Everything listens on 127.0.0.1 and is stopped (or dropped) when the bench ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from loguru import logger
from PIL import Image

from flick.embedded import EmbeddedSeaweed
from flick.settings import Settings
from flick.storage import S3Storage
from flick.testing.services import (
    TEST_DATABASE_ENV,
    make_storage,
    test_postgres,
    test_seaweed,
)
from flick.testing.services import (
    fresh_database as new_database_on,
)

MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


# ---- logging ---------------------------------------------------------------------------------
def quiet_logging(level: str = "WARNING") -> None:
    """Only warnings and errors: a log line per update would measure the terminal, not Flick."""
    logger.remove()
    logger.add(sys.stderr, level=level, format="{time:HH:mm:ss} {level} {name}: {message}")
    logging.getLogger("pyrogram").setLevel(logging.WARNING)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


# ---- services ----------------------------------------------------------------------------------
async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def database_server(flag: str | None) -> str | None:
    """The server to make a fresh database on, or None for an embedded PostgreSQL."""
    if flag:
        return None if flag == "embedded" else flag
    if os.environ.get(TEST_DATABASE_ENV):
        return os.environ[TEST_DATABASE_ENV]
    return MACHINE_POSTGRES if await _answers(MACHINE_POSTGRES) else None


@asynccontextmanager
async def fresh_database(server: str | None, tmp: Path) -> AsyncIterator[str]:
    """A new, empty database (dropped afterwards), or an embedded server (stopped afterwards)."""
    if server is None:
        saved = os.environ.pop(TEST_DATABASE_ENV, None)
        try:
            async with test_postgres(tmp) as url:
                yield url
        finally:
            if saved is not None:
                os.environ[TEST_DATABASE_ENV] = saved
        return
    async with new_database_on(server, "flick_bench") as url:
        yield url


@dataclass
class Services:
    database_url: str
    database_kind: str
    seaweed: EmbeddedSeaweed
    tmp: Path

    def storage(self, **options: Any) -> S3Storage:
        """An S3Storage on a fresh bucket of the SeaweedFS (start it with `async with`)."""
        return make_storage(self.seaweed, "bench", **options)


@asynccontextmanager
async def services(database: str | None) -> AsyncIterator[Services]:
    """Real PostgreSQL and SeaweedFS in a temporary directory, gone when the block ends."""
    tmp = Path(tempfile.mkdtemp(prefix="flick-bench-"))
    try:
        server = await database_server(database)
        kind = "embedded PostgreSQL" if server is None else f"fresh database on {_host(server)}"
        async with (
            fresh_database(server, tmp / "pg") as url,
            test_seaweed(tmp / "s3") as seaweed,
        ):
            yield Services(url, kind, seaweed, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _host(url: str) -> str:
    return url.split("@")[-1].split("/")[0]


def bench_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Production defaults, except what a benchmark says (and no .env file of the machine)."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "image_provider": "local",
        "video_provider": "local",
        # The engine benchmarks send generated photos without faces; `bench.pipeline` measures
        # the face check on its own.
        "face_check": False,
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to create a fresh database on ('embedded': start one); default: "
        f"${TEST_DATABASE_ENV}, else {MACHINE_POSTGRES} if it answers, else embedded",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="profile the measured phase with pyinstrument; write DIR/<bench>-<phase>.txt/.html",
    )


# ---- measurements ------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of unsorted values (q in 0..100); nan when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def __str__(self) -> str:
        return (
            f"n={self.count} p50={self.p50_ms:.2f} ms p99={self.p99_ms:.2f} ms "
            f"max={self.max_ms:.2f} ms"
        )


def summarize(seconds: Sequence[float]) -> LatencySummary:
    return LatencySummary(
        len(seconds),
        percentile(seconds, 50) * 1000,
        percentile(seconds, 99) * 1000,
        (max(seconds) if seconds else float("nan")) * 1000,
    )


def rss_mb(pid: int | None = None) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process (VmHWM); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """VmHWM: the most resident memory since the last reset_peak_rss() (or since start)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples RSS every `interval` s in the event loop: the peak and the curve of a phase."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak = 0.0
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        proc = psutil.Process()
        while True:
            rss = proc.memory_info().rss / 2**20
            self.peak = max(self.peak, rss)
            self.samples.append((time.perf_counter(), rss))
            await asyncio.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


# ---- profiling ---------------------------------------------------------------------------------
@contextmanager
def profiled(directory: Path | None, name: str) -> Iterator[None]:
    """pyinstrument over the block (all of the event loop's work, not one coroutine)."""
    if directory is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        directory.mkdir(parents=True, exist_ok=True)
        text = profiler.output_text(unicode=True, color=False, show_all=False)
        (directory / f"{name}.txt").write_text(text)
        (directory / f"{name}.html").write_text(profiler.output_html())
        session = profiler.last_session
        if session is not None:  # for `pyinstrument --load` with other options
            session.save(str(directory / f"{name}.pyisession"))
            shares = by_package(session)
            total = sum(shares.values()) or 1.0
            top = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in shares.most_common(9))
            print(f"  profile {name}: CPU by package: {top}")
        print(f"  profile: {directory / name}.txt (.html)")


# Packages worth telling apart in a profile, most specific first.
_PACKAGES = (
    "flick/testing", "bench/", "flick/", "pyrogram", "asyncpg", "miniopy_async", "aiohttp",
    "openai", "httpx", "httpcore", "replicate", "loguru", "transitions", "pydantic", "PIL",
    "piccolo", "asyncio", "selectors", "concurrent",
)  # fmt: skip


def by_package(session: Any) -> Counter[str]:
    """Self time of a pyinstrument session, summed by package (file path prefix). Time under the
    offline Telegram's answers and the load generator goes to "harness": production spends it on
    network I/O and MTProto instead, and the baseline pays the same per update."""
    shares: Counter[str] = Counter()

    def walk(frame: Any, owner: str, harness: bool) -> None:
        # Built-ins (socket.send, dict.values, …) count for the Python code that called them.
        path = frame.file_path or ""
        if path and not path.startswith("<"):
            owner = path
        harness = harness or _is_harness(frame.function, path)
        if frame.is_synthetic:  # "[self]": time spent in the parent frame's own code
            key = next((p.rstrip("/") for p in _PACKAGES if p in owner), "other")
            shares["harness" if harness else key] += frame.time
        for child in frame.children:
            walk(child, owner, harness)

    root = session.root_frame()
    if root is not None:
        walk(root, root.file_path or "", False)
    return shares


def _is_harness(function: str, path: str) -> bool:
    if path.endswith("flick/testing/telegram/server.py") and function == "invoke":
        return True
    return path.endswith("bench/offline.py") and function == "inject"


def harness_share(session: Any) -> float:
    shares = by_package(session)
    total = sum(shares.values())
    return shares["harness"] / total if total else 0.0


# ---- the report --------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    value: str
    target: str = ""
    ok: bool | None = None


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.rows.append(Row(name, value, target, ok))
        mark = "" if ok is None else ("  [met]" if ok else "  [MISSED]")
        print(f"  {name:<46} {value:<34} {target}{mark}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def print_summary(self) -> None:
        print()
        print(f"== {self.title}: summary ==")
        for row in self.rows:
            mark = "" if row.ok is None else ("met" if row.ok else "MISSED")
            target = f"target {row.target}" if row.target else ""
            print(f"  {row.name:<46} {row.value:<34} {target:<22} {mark}")
        missed = [r.name for r in self.rows if r.ok is False]
        print(f"  targets missed: {', '.join(missed) if missed else 'none'}")


def header(title: str, extra: str = "") -> None:
    mem = psutil.virtual_memory().total / 2**30
    print(f"== {title} ==")
    print(
        f"  machine: {platform.node()} nproc={os.cpu_count()} memory={mem:.1f} GiB "
        f"python={platform.python_version()} load={os.getloadavg()[0]:.2f} {extra}".rstrip()
    )


def jpeg(color: tuple[int, int, int] = (200, 80, 60), size: tuple[int, int] = (320, 400)) -> bytes:
    """A small real JPEG, as Telegram would hand over a user's photo."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def run(main: Any, limit: float) -> None:
    """asyncio.run(main) with a hard stop: the bench never runs past `limit` seconds."""

    async def bounded() -> None:
        try:
            async with asyncio.timeout(limit):
                await main
        except TimeoutError:
            print(f"!! stopped after the {limit:.0f} s limit", file=sys.stderr)
            raise SystemExit(2) from None

    asyncio.run(bounded())


class GcClock:
    """Time spent in the cyclic garbage collector (gc.callbacks), by generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.longest = 0.0
        self.longest_what = ""
        self.collections = Counter[int]()
        self.pauses: list[tuple[float, float]] = []  # (start, end) of each collection, perf_counter
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ended = time.perf_counter()
        spent = ended - self._started
        self.pauses.append((self._started, ended))
        self.seconds += spent
        generation = int(info.get("generation", -1))
        if spent > self.longest:
            # Which collection, and what it freed: a young generation that takes long is full
            # of survivors; one that frees a lot is churn (and its finalizers run inside it).
            self.longest_what = f"gen{generation}, {info.get('collected', 0):,} freed"
        self.longest = max(self.longest, spent)
        self.collections[generation] += 1

    def __enter__(self) -> GcClock:
        import gc

        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        gc.callbacks.remove(self._callback)

    def __str__(self) -> str:
        gens = "/".join(str(self.collections[g]) for g in (0, 1, 2))
        longest = f"{self.longest * 1000:.0f} ms"
        if self.longest_what:
            longest += f": {self.longest_what}"
        return f"{self.seconds:.2f} s in GC (longest {longest}, gen0/1/2 {gens})"


async def wait_until(predicate: Any, limit: float, step: float = 0.2) -> bool:
    """Poll a plain predicate (no event to wait on) until it holds or `limit` seconds pass."""
    deadline = time.perf_counter() + limit
    while True:
        if predicate():
            return True
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(step)


@asynccontextmanager
async def flick_on_offline_telegram(
    svc: Services, client: Any, settings: Settings, **engine: Any
) -> AsyncIterator[Any]:
    """Flick as `flick run` wires it (gateway: adapter + outbox) on an offline kurigram client,
    on a fresh bucket; `engine`: Flick's own arguments (providers, pipeline)."""
    from flick.app import Flick
    from flick.telegram.gateway import TelegramGateway

    async def unwired(event: Any) -> None:
        raise RuntimeError("the adapter is wired to Flick once the engine is up")

    async with svc.storage() as storage:
        gateway = TelegramGateway(
            client, unwired, storage, send_rate=settings.send_rate,
            tmp_dir=Path(settings.data_dir) / "tmp", publish_commands=False,
        )  # fmt: skip
        async with Flick(
            settings, gateway.outbox, database_url=svc.database_url, storage=storage,
            lock=False, resume=False, **engine,
        ) as app:  # fmt: skip
            gateway.adapter.dispatch = app.dispatch
            gateway.adapter.hold_new_users(app.supervisor)
            await storage.put("warm-up", b"warm", "text/plain")  # SeaweedFS makes volumes lazily
            await gateway.start()
            try:
                yield app
            finally:
                gateway.adapter.uninstall()
                await app.supervisor.stop(drain_seconds=5)
                await gateway.stop()
