"""Wiring: builds everything from Settings, starts it in order and stops it in reverse.

lock → database (embedded or external) → migrations → storage → providers → engine
     → (Telegram, health server: added by the caller) … and back again on exit.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from loguru import logger
from pgqueuer.models import Job as QueueJob

from flick import i18n
from flick.actors import messages as msg
from flick.actors.context import Context
from flick.actors.supervisor import Supervisor
from flick.admin.broadcast import Broadcaster
from flick.embedded import DataDirLock, EmbeddedPostgres, EmbeddedSeaweed, prepare_data_dir
from flick.errors import ConfigError
from flick.models import db, generation_jobs, migrations, referrals
from flick.ops.instruments import Instruments
from flick.ops.logging import register_secret
from flick.payments.packages import build_packages
from flick.payments.plans import build_plans
from flick.payments.reconcile import Report, StarTransaction, charges_from, find_missing
from flick.pipeline.imaging import PhotoLimits
from flick.pipeline.limiter import AILimiter
from flick.pipeline.model_choice import ModelChooser
from flick.pipeline.photo_sweeper import PhotoSweeper
from flick.pipeline.runner import GenerationRunner, PipelineConfig
from flick.pipeline.transfer import remove_leftovers
from flick.ports import FaceDetector, ImageProvider, Outbox, Storage, VideoProvider
from flick.settings import Settings
from flick.storage import S3Storage
from flick.styles import Style, load_styles
from flick.work import signals
from flick.work.engine import Entrypoint, WorkEngine
from flick.work.progress_board import ProgressBoard
from flick.work.version import config_version


def check_providers(settings: Settings) -> None:
    """Settings problems for the chosen providers, found before any server starts."""
    problems = []
    if settings.image_provider == "openai" and settings.openai_api_key is None:
        problems.append(
            (
                "OPENAI_API_KEY",
                "is not set",
                "get a key at https://platform.openai.com "
                "or set IMAGE_PROVIDER=local for the offline provider",
            )
        )
    if settings.video_provider == "replicate" and settings.replicate_api_token is None:
        problems.append(
            (
                "REPLICATE_API_TOKEN",
                "is not set",
                "get a token at "
                "https://replicate.com/account/api-tokens or set VIDEO_PROVIDER=local",
            )
        )
    if problems:
        raise ConfigError(problems)


def build_image_provider(settings: Settings) -> ImageProvider:
    if settings.image_provider == "local":
        from flick.pipeline.local import LocalImageProvider

        return LocalImageProvider()
    from flick.pipeline.openai_images import OpenAIImageProvider

    assert settings.openai_api_key is not None
    return OpenAIImageProvider(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        model=settings.image_model,
        quality=settings.image_quality,
        size=settings.image_size,
        input_fidelity=settings.image_input_fidelity,
    )


def _no_metric(name: str, labels: dict[str, str], value: float) -> None:
    return None


def build_video_provider(settings: Settings) -> VideoProvider:
    if settings.video_provider == "local":
        from flick.pipeline.local import LocalVideoProvider

        return LocalVideoProvider(settings.data_dir / "local-videos")
    from flick.pipeline.replicate_video import ReplicateVideoProvider

    assert settings.replicate_api_token is not None
    return ReplicateVideoProvider(
        api_token=settings.replicate_api_token.get_secret_value(),
        base_url=settings.replicate_base_url,
        model=settings.video_model,
        max_bytes=settings.max_video_bytes,
    )


@dataclass
class Flick:
    """The running engine and what it stands on. Use as `async with Flick(settings, outbox):`."""

    settings: Settings
    outbox: Outbox
    image: ImageProvider | None = None
    video: VideoProvider | None = None
    pipeline: PipelineConfig | None = None
    database_url: str | None = None  # overrides settings (tests)
    storage: Storage | None = None  # overrides settings (tests)
    lock: bool = True
    resume: bool = True  # hand unfinished generations back to their actors at start
    instruments: Instruments | None = None
    faces: FaceDetector | None = None  # overrides the one FACE_CHECK builds (tests)
    supervisor: Supervisor = field(init=False)
    broadcaster: Broadcaster = field(init=False)
    limiter: AILimiter = field(init=False)
    sweeper: PhotoSweeper = field(init=False)
    work: WorkEngine = field(init=False)
    _reloads: set[asyncio.Task[None]] = field(init=False, default_factory=set)
    _stack: AsyncExitStack = field(init=False, default_factory=AsyncExitStack)

    async def __aenter__(self) -> Flick:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        s, stack = self.settings, self._stack
        styles = load_styles(s.styles_file)
        i18n.load_all()
        data_dir = prepare_data_dir(Path(s.data_dir))
        if self.lock:
            stack.enter_context(DataDirLock(data_dir))
            if removed := remove_leftovers(data_dir / "tmp"):
                logger.info("removed {} temporary video file(s) left by a killed run", removed)

        url = self.database_url
        embedded = url is None and s.database_url is None
        if url is None:
            if embedded:
                pg = await stack.enter_async_context(EmbeddedPostgres(data_dir))
                url = pg.url
                logger.info("database: embedded PostgreSQL in {}", data_dir / "postgres")
            else:
                assert s.database_url is not None
                url = s.database_url.get_secret_value()
                logger.info("database: external PostgreSQL")
        await stack.enter_async_context(db.connection_pool(url, s.db_pool_min, s.db_pool_max))
        if embedded or self.database_url is not None:
            applied = await migrations.apply()
            if applied:
                logger.info("applied {} migration(s)", len(applied))
        else:
            await migrations.require_current()

        storage = self.storage
        if storage is None:
            if s.embedded_storage:
                weed = await stack.enter_async_context(EmbeddedSeaweed(data_dir))
                storage = S3Storage.from_settings(
                    s,
                    endpoint=weed.endpoint,
                    access_key=weed.access_key,
                    secret_key=weed.secret_key,
                )
                register_secret(weed.secret_key)
                register_secret(weed.access_key)
                logger.info("storage: embedded SeaweedFS at {}", weed.endpoint)
            else:
                storage = S3Storage.from_settings(s)
                logger.info("storage: S3 at {} bucket {}", s.s3_endpoint, s.s3_bucket)
            await stack.enter_async_context(storage)
        self.storage = storage

        image = self.image or build_image_provider(s)
        video = self.video or build_video_provider(s)
        for provider in (image, video):
            if hasattr(provider, "__aexit__"):
                await stack.enter_async_context(provider)  # type: ignore[arg-type]
        self.limiter = AILimiter(s.ai_concurrency)
        config = self.pipeline or PipelineConfig(
            compose_budget=s.compose_budget_seconds,
            animate_budget=s.animate_budget_seconds,
            deliver_budget=s.deliver_budget_seconds,
            max_video_bytes=s.max_video_bytes,
            usd_per_second=s.replicate_usd_per_second,
        )
        runner = GenerationRunner(
            storage=storage,
            image=image,
            video=video,
            limiter=self.limiter,
            outbox=self.outbox,
            config=config,
            observe=self.instruments.observe if self.instruments else None,
            tmp_dir=data_dir / "tmp",
            models=ModelChooser(
                threshold=s.video_breaker_failures,
                cool_down=s.video_breaker_cool_down_seconds,
                on_metric=self.instruments.on_metric if self.instruments else _no_metric,
            ),
            **self._fallbacks(image, video),
        )
        ctx = Context(
            settings=s,
            styles=styles,
            packages=build_packages(s.packages),
            outbox=self.outbox,
            storage=storage,
            runner=runner,
            photo_limits=PhotoLimits(s.max_photo_bytes, s.max_photo_side, s.min_photo_side),
            admin_ids=frozenset(s.admin_ids),
            plans=build_plans(s.plans),
            bot_username=s.bot_username,
            faces=self._face_detector(),
        )
        if self.instruments is not None:
            ctx.on_metric = self.instruments.on_metric
        self.broadcaster = Broadcaster(
            self.outbox,
            rate=max(1.0, s.send_rate / 2),
            on_gone=lambda uid: self.supervisor.post(uid, msg.RecipientBlocked()),
        )
        ctx.broadcaster = self.broadcaster
        stack.push_async_callback(self.broadcaster.stop)
        self.supervisor = await stack.enter_async_context(Supervisor(ctx))
        await self._start_work(url, styles, embedded=embedded)
        self.sweeper = await stack.enter_async_context(
            PhotoSweeper(storage, timedelta(hours=s.photo_keep_hours), s.photo_sweep_seconds)
        )
        if self.resume:
            await self.resume_work()
        logger.info(
            "engine ready: image={} video={} ai_concurrency={} styles={}",
            image.name,
            video.name,
            s.ai_concurrency,
            ",".join(styles),
        )

    async def resume_work(self) -> None:
        """Hand unfinished generations and broadcasts back to their owners (after a restart)."""
        resumed = await self.supervisor.resume_unfinished()
        if resumed:
            logger.info("resuming {} unfinished generation(s)", resumed)
        if await self.broadcaster.resume_all():
            logger.info("resuming unfinished broadcasts")
        owed = await referrals.inviters_owed()
        for inviter, referral_id in owed:  # their message lived in memory only
            self.supervisor.post(inviter, msg.ReferralBonus(referral_id))
        if owed:
            logger.info("crediting {} inviter bonus(es) left over from before", len(owed))

    async def _start_work(self, url: str, styles: dict[str, Style], *, embedded: bool) -> None:
        """Generation work from the queue: this process takes `generate` jobs (within the AI
        bound every process shares) and `settle` jobs (workers' videos to send, their failures
        to refund); progress of generations run elsewhere or waiting is shown from here."""
        s, stack, supervisor = self.settings, self._stack, self.supervisor
        generation_jobs.set_version(config_version(styles, s))
        await generation_jobs.publish_version()  # this gateway's configuration is in force
        if embedded and (orphans := await generation_jobs.reclaim_orphans()):
            # Ours alone, so whoever picked these is dead: no heartbeat timeout to wait out.
            logger.info("{} generation job(s) of a killed run back in the queue", orphans)
        board = await stack.enter_async_context(
            ProgressBoard(
                self.outbox, styles, seats=s.ai_concurrency, is_local=supervisor.generations.running
            )
        )
        await stack.enter_async_context(
            signals.Listener(
                url,
                on_progress=board.show,
                on_cancel=supervisor.generations.cancel,
                on_queue_change=board.poke,
            )
        )

        async def generate(job: QueueJob) -> None:
            await supervisor.run_generation(generation_jobs.generation_of(job.payload))

        async def settle(job: QueueJob) -> None:
            await supervisor.settle(generation_jobs.Outcome.load(job.payload or b"{}"))

        self.work = await stack.enter_async_context(
            WorkEngine(
                url,
                [Entrypoint(generation_jobs.SETTLE, settle)]
                + (
                    [Entrypoint(generation_jobs.GENERATE, generate, limit=s.ai_concurrency)]
                    if s.gateway_generates
                    else []
                ),
                heartbeat=timedelta(seconds=s.work_heartbeat_seconds),
            )
        )
        # Before the engine's exit waits for its handlers: their generations stop first.
        supervisor.stop_taking = self.work.stop_taking
        stack.push_async_callback(supervisor.stop)

    def _face_detector(self) -> FaceDetector | None:
        if not self.settings.face_check:
            return None
        if self.faces is not None:
            return self.faces
        from flick.pipeline.faces import HaarFaceDetector  # OpenCV loads only when it is used

        return self._stack.enter_context(HaarFaceDetector())

    def _fallbacks(self, image: ImageProvider, video: VideoProvider) -> dict[str, Any]:
        """LOCAL_FALLBACK: the offline providers stand in when a remote one is down."""
        if not self.settings.local_fallback:
            return {}
        from flick.pipeline.local import LocalImageProvider, LocalVideoProvider

        out: dict[str, Any] = {}
        if image.name != "local":
            out["fallback_image"] = LocalImageProvider()
        if video.name != "local":
            fallback = LocalVideoProvider(Path(self.settings.data_dir) / "fallback-videos")
            self._stack.push_async_callback(fallback.close)
            out["fallback_video"] = fallback
        return out

    def reload_styles(self) -> bool:
        """Re-read the styles file (SIGHUP). A broken file is refused and the old styles stay."""
        try:
            styles = load_styles(self.settings.styles_file)
        except ConfigError as exc:
            logger.error("styles not reloaded: {}", exc.render())
            return False
        current = self.supervisor.ctx.styles
        current.clear()
        current.update(styles)
        # The new styles are in force: workers still on the old ones are told and wait.
        generation_jobs.set_version(config_version(styles, self.settings))
        task = asyncio.create_task(generation_jobs.publish_version())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
        logger.info("styles reloaded: {}", ",".join(styles))
        return True

    async def reconcile(self, transactions: list[StarTransaction]) -> Report:
        """Hand every Stars charge we never recorded to its user's actor, which credits it."""
        report = await find_missing(charges_from(transactions))
        for charge in report.missing:
            logger.bind(user_id=charge.user_id).warning(
                "reconciling charge {} that never reached the bot", charge.charge_id
            )
            self.supervisor.post(
                charge.user_id,
                msg.ReconciledCharge(
                    charge.charge_id,
                    charge.stars,
                    charge.payload,
                    charge.subscription_period,
                    charge.date,
                ),
            )
        return report

    async def dispatch(self, event: Any) -> None:
        await self.supervisor.dispatch(event)
