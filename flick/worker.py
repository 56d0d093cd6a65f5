"""`flick worker`: generation steps only, on any host that shares PostgreSQL and S3 with the
gateway. Any number of them; each takes `generate` jobs within the AI bound every process shares.

A worker holds no Telegram session. Its progress lines go to the gateway by NOTIFY, and its
finished video goes to S3, then back to the gateway as a `settle` job, which sends it. Why the
gateway sends rather than a session of the worker's own: Telegram revokes an authorization key
used from two addresses at once (AUTH_KEY_DUPLICATED), so a worker cannot borrow the gateway's;
a session of each worker's own is a sign-in per worker and a login to keep per host. The price
is the gateway's bandwidth: a video crosses its network card twice (from S3, to Telegram)
instead of three times when it ran everything (docs/deploy.md, BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from loguru import logger
from pgqueuer.models import Job as QueueJob

from flick import i18n
from flick.app import build_image_provider, build_video_provider
from flick.embedded import prepare_data_dir
from flick.errors import ConfigError
from flick.models import db, generation_jobs, migrations
from flick.models.generation_jobs import Outcome
from flick.ops.health import Check, HealthServer
from flick.ops.metrics import METRICS
from flick.ops.sentry import setup_sentry
from flick.pipeline.limiter import AILimiter
from flick.pipeline.model_choice import ModelChooser
from flick.pipeline.runner import GenerationRunner, PipelineConfig
from flick.ports import ImageProvider, Storage, VideoProvider
from flick.retries import retry_transient
from flick.settings import Settings
from flick.storage import S3Storage
from flick.styles import load_styles
from flick.work import signals
from flick.work.engine import Entrypoint, VersionMismatch, WorkEngine
from flick.work.job_records import job_for
from flick.work.progress_board import RelayedProgress
from flick.work.tasks import Ended, GenerationTasks
from flick.work.version import config_version

#: How long a stopping worker lets a paid step (a compose) finish before parking the rest.
STOP_SECONDS = 30.0


def _health_checks(storage: Storage, engine: WorkEngine, version: str) -> dict[str, Check]:
    """What a worker needs to take and finish a generation. `configuration` fails while the
    active gateway's version differs: such a worker takes no job (`flick.work.engine`)."""

    async def database() -> None:
        await db.pool().fetchval("SELECT 1")

    async def queue() -> None:
        if not engine.ready.is_set():
            raise ConnectionError("not listening for generation jobs")

    async def configuration() -> None:
        in_force = await generation_jobs.version_in_force()
        if in_force is not None and in_force != version:
            raise VersionMismatch(f"this worker has {version}, the gateway {in_force}")

    checks: dict[str, Check] = {"database": database}
    if (storage_check := getattr(storage, "check", None)) is not None:
        checks["storage"] = storage_check  # S3Storage's; a test's in-memory storage has none
    return {**checks, "queue": queue, "configuration": configuration}


async def _hand_back(ended: Ended) -> None:
    if ended.job.ended_elsewhere:
        return  # who ended it, or took it over, tells the gateway: a settle from here is a second
    error = ended.error
    outcome = Outcome(
        ended.job.generation_id,
        None if error is None else (error.kind, error.user_reason, str(error)),
        ended.job.recipient_gone,
    )

    def told(exc: BaseException, attempt: int) -> None:
        logger.warning("handing generation {} back: {}", outcome.generation_id, exc)

    await retry_transient(lambda: generation_jobs.hand_back(outcome), budget=None, on_retry=told)


@asynccontextmanager
async def worker(
    settings: Settings,
    *,
    database_url: str | None = None,
    storage: Storage | None = None,
    image: ImageProvider | None = None,
    video: VideoProvider | None = None,
    pipeline: PipelineConfig | None = None,
) -> AsyncIterator[WorkEngine]:
    """A running worker; leaving the block stops it at resumable points."""
    s = settings
    url = database_url or (s.database_url.get_secret_value() if s.database_url else None)
    problems = []
    if url is None:
        problems.append(
            ("DATABASE_URL", "a worker has no database of its own", "set it to the gateway's")
        )
    if storage is None and s.embedded_storage:
        problems.append(
            (
                "S3_ENDPOINT",
                "a worker has no storage of its own",
                "set it (and its keys) to the gateway's",
            )
        )
    if problems or url is None:
        raise ConfigError(problems)
    styles = load_styles(s.styles_file)
    i18n.load_all()
    data_dir = prepare_data_dir(Path(s.data_dir))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(db.connection_pool(url, s.db_pool_min, s.db_pool_max))
        await migrations.require_current()
        if storage is None:
            storage = await stack.enter_async_context(S3Storage.from_settings(s))
        image = image or build_image_provider(s)
        video = video or build_video_provider(s)
        for provider in (image, video):
            if hasattr(provider, "__aexit__"):
                await stack.enter_async_context(provider)  # type: ignore[arg-type]
        runner = GenerationRunner(
            storage=storage,
            image=image,
            video=video,
            limiter=AILimiter(s.ai_concurrency),
            outbox=None,
            config=pipeline
            or PipelineConfig(
                compose_budget=s.compose_budget_seconds,
                animate_budget=s.animate_budget_seconds,
                deliver_budget=s.deliver_budget_seconds,
                max_video_bytes=s.max_video_bytes,
                usd_per_second=s.replicate_usd_per_second,
            ),
            tmp_dir=data_dir / "tmp",
            models=ModelChooser(
                threshold=s.video_breaker_failures, cool_down=s.video_breaker_cool_down_seconds
            ),
            progress=RelayedProgress,
            deliver=False,
        )
        version = config_version(styles, s)
        generation_jobs.set_version(version)
        in_force = await generation_jobs.version_in_force()
        if in_force is not None and in_force != version:
            logger.error(
                "this worker's configuration is {}, the gateway's is {}: it takes no job until "
                "it runs with the gateway's styles and model settings",
                version,
                in_force,
            )
        tasks = GenerationTasks(runner.run, _hand_back)

        async def generate(job: QueueJob) -> None:
            generation_id = generation_jobs.generation_of(job.payload)
            found = await job_for(generation_id, styles)
            if found is None:
                return  # it ended meanwhile (a /cancel, a refund)
            if found.job is None:
                assert found.error is not None
                error = (found.error.kind, found.error.user_reason, str(found.error))
                await generation_jobs.hand_back(Outcome(generation_id, error))
                return
            logger.info("generation {}: taken at {}", generation_id, found.record.status.value)
            await tasks.run(found.job)
            if found.job.ended_elsewhere:
                logger.info("generation {}: ended elsewhere, nothing handed back", generation_id)
            else:
                logger.info("generation {}: handed back", generation_id)

        await stack.enter_async_context(signals.Listener(url, on_cancel=tasks.cancel))
        engine = await stack.enter_async_context(
            WorkEngine(
                url,
                [Entrypoint(generation_jobs.GENERATE, generate, limit=s.ai_concurrency)],
                heartbeat=timedelta(seconds=s.work_heartbeat_seconds),
                max_jobs=s.worker_max_generations or None,
            )
        )

        async def stop_generations() -> None:
            engine.stop_taking()
            await tasks.stop(asyncio.get_running_loop().time() + STOP_SECONDS)

        stack.push_async_callback(stop_generations)  # before the engine waits for its handlers
        # 200 {"worker": "ok", …} while it can take generations; off unless HEALTH_ADDRESS is set.
        checks = _health_checks(storage, engine, version)
        health = HealthServer(s.health_address, checks, METRICS, notes={"worker": "ok"})
        await stack.enter_async_context(health)
        logger.info(
            "worker ready: image={} video={} ai_concurrency={} worker_max_generations={} "
            "configuration {}",
            image.name,
            video.name,
            s.ai_concurrency,
            s.worker_max_generations,
            version,
        )
        yield engine


async def serve_worker(settings: Settings, stop: asyncio.Event) -> None:
    setup_sentry(settings)  # a worker's failed generations reach Sentry as the gateway's do
    async with worker(settings):
        await stop.wait()
        logger.info("stopping: no new generations; parking the running ones")
