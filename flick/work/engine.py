"""pgqueuer's queue manager inside this process: takes generation jobs and runs their handlers.

On a small pool of its own. When PostgreSQL goes away (restarted, failed over), every query the
queue makes waits it out instead of failing: a failing queue manager would wait for every
generation running here before it took a job again. Running generations go on meanwhile (they
use Flick's pool), their heartbeats and ends are written once the database is back, and jobs are
then found by polling every second even if the LISTEN connection was lost.

A stop first stops taking jobs; the owner then stops its generations at a resumable point, and
their handlers hand the jobs back (`RetryRequested`), so the next process takes them at once
instead of after a heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TypeVar

import asyncpg
from loguru import logger
from pgqueuer import AsyncpgPoolDriver, Queries, QueueManager
from pgqueuer.errors import RetryRequested
from pgqueuer.models import Job as QueueJob

from flick.errors import is_transient
from flick.models.generation_jobs import version, version_in_force
from flick.work.tasks import Parked

Handler = Callable[[QueueJob], Awaitable[None]]
T = TypeVar("T")
#: How often a process whose configuration is not the one in force looks at it again.
OTHER_VERSION_DELAY = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class Entrypoint:
    name: str
    handler: Handler
    #: Jobs of this entrypoint running at once across every process (0: no limit).
    limit: int = 0


class VersionMismatch(Exception):  # noqa: N818 - a refusal, reported
    pass


async def other_version_in_force() -> str | None:
    """The version in force when it is not this process's (None: this one, or none yet)."""
    in_force = await version_in_force()
    return in_force if in_force is not None and in_force != version() else None


def _guarded(entry: Entrypoint, pause: Callable[[], None]) -> Handler:
    async def handle(job: QueueJob) -> None:
        if (in_force := await other_version_in_force()) is not None:
            # Reported, never run with another configuration. The job goes back at once, for a
            # process of the version in force, and this one takes no more until its version is
            # in force: a job delayed instead would make its user wait whenever the stale
            # process (still picking every job it can) got it first.
            logger.error(
                "configuration {} is in force (the active gateway's), this process has {}: "
                "leaving job {} ({}); start it with the gateway's styles and model settings",
                in_force,
                version(),
                job.id,
                job.entrypoint,
            )
            pause()
            raise RetryRequested(timedelta(0), reason="configuration version differs")
        try:
            await entry.handler(job)
        except Parked as exc:
            raise RetryRequested(timedelta(0), reason="the process stopped") from exc

    return handle


class _PatientDriver(AsyncpgPoolDriver):
    """pgqueuer's pool driver, retrying a query while the database is out of reach."""

    def __init__(self, pool: asyncpg.Pool, stopping: asyncio.Event) -> None:
        super().__init__(pool)
        self._stopping = stopping

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        return await self._patient(lambda: AsyncpgPoolDriver.fetch(self, query, *args))

    async def execute(self, query: str, *args: object) -> str:
        return await self._patient(lambda: AsyncpgPoolDriver.execute(self, query, *args))

    async def _patient(self, call: Callable[[], Awaitable[T]]) -> T:
        delay = 0.5
        while True:
            try:
                return await call()
            except Exception as exc:
                if not is_transient(exc) or self._stopping.is_set():
                    raise
                logger.warning("generation queue: {}; trying again in {:.1f}s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class WorkEngine:
    def __init__(
        self,
        url: str,
        entrypoints: list[Entrypoint],
        *,
        heartbeat: timedelta = timedelta(seconds=10),
        dequeue_timeout: timedelta = timedelta(seconds=1),
        max_jobs: int | None = None,
    ) -> None:
        self._url = url
        self._max_jobs = max_jobs
        self._entrypoints = entrypoints
        self._heartbeat = heartbeat
        self._dequeue_timeout = dequeue_timeout
        self._stopping = asyncio.Event()
        self._qm: QueueManager | None = None
        self._other_version = False  # a job was refused: take none until our version is in force
        self._task: asyncio.Task[None] | None = None
        #: Set once a queue manager listens (tests and health checks wait for it).
        self.ready = asyncio.Event()

    async def __aenter__(self) -> WorkEngine:
        self._task = asyncio.create_task(self._serve(), name="work-engine")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_taking()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def stop_taking(self) -> None:
        """Take no more jobs; those running end as their handlers do."""
        self._stopping.set()
        if self._qm is not None:
            self._qm.shutdown.set()

    def _pause(self) -> None:
        self._other_version = True
        if self._qm is not None:
            self._qm.shutdown.set()  # no more dequeues; the running jobs end as they do

    async def _until_version_in_force(self) -> None:
        """Wait (taking no job) until this process's configuration is the one in force."""
        while not self._stopping.is_set():
            try:
                if await other_version_in_force() is None:
                    logger.info("configuration {} is in force: taking jobs again", version())
                    self._other_version = False
                    return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("generation queue: reading the configuration in force: {}", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), OTHER_VERSION_DELAY.total_seconds())

    async def _serve(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            if self._other_version:
                await self._until_version_in_force()
                continue
            try:
                await self._run_once()
                delay = 0.5
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("generation queue: {}; starting again in {:.1f}s", exc, delay)
            self.ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, 10.0)

    async def _run_once(self) -> None:
        # Two connections at least: pgqueuer keeps one for LISTEN, queries use the others.
        pool = await asyncpg.create_pool(self._url, min_size=2, max_size=4, timeout=10)
        try:
            qm = QueueManager(Queries(_PatientDriver(pool, self._stopping)))
            for entry in self._entrypoints:
                qm.entrypoint(entry.name, concurrency_limit=entry.limit)(
                    _guarded(entry, self._pause)
                )
            self._qm = qm
            if self._stopping.is_set():
                return
            self.ready.set()
            await qm.run(
                # One job per dequeue: jobs handed over at once spread over the processes that
                # wake, instead of the first one taking ten (bench.workers, BENCHMARKS.md).
                batch_size=1,
                # A worker's own bound (WORKER_MAX_GENERATIONS), enforced by the dequeue query.
                max_concurrent_tasks=self._max_jobs,
                dequeue_timeout=self._dequeue_timeout,
                heartbeat_timeout=self._heartbeat,
                # A lost LISTEN connection leaves polling, not a stop (see the module's doc).
                shutdown_on_listener_failure=False,
            )
        finally:
            self._qm = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)
