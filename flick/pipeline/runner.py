"""One generation, step by step: compose → animate → deliver, resumable from its record.

Every status change goes through the lifecycle machine (`flick.fsm.generation`) and is written
compare-and-set (`flick.models.generations.advance`), so a /cancel that won the race stops the
run at its next step, and a run that reached `delivering` (the point of no return) cannot be
canceled any more. The runner never touches the balance: it raises a FinalError and the user's
actor refunds. Each step first looks at what the record already holds, so a restarted Flick
never pays twice for a step: a stored combined image is reused, an existing prediction polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger

from flick.errors import BudgetExceededError, FinalError, TelegramRefused, TransientError
from flick.fsm.generation import Status
from flick.i18n import t
from flick.media import MediaError, VideoMeta, probe_video, with_thumbnail
from flick.models import generations
from flick.models.generations import RefusedTransition
from flick.pipeline import imaging, transfer
from flick.pipeline.job import Job, PipelineConfig, Run
from flick.pipeline.limiter import AILimiter
from flick.pipeline.model_choice import ModelChooser
from flick.pipeline.predictions import FALLBACK_PREFIX, Predictions, is_fallback
from flick.pipeline.progress import Progress, ProgressFactory, ProgressMessage
from flick.pipeline.retry import with_retries
from flick.ports import (
    Button,
    ImageProvider,
    Keyboard,
    Outbox,
    RecipientGone,
    RecipientUnreachable,
    Storage,
    VideoProvider,
)
from flick.routes import DEFAULT_TIER, Tier, image_inputs, model_inputs
from flick.storage import combined_key, video_key


class GenerationRunner:
    def __init__(
        self,
        *,
        storage: Storage,
        image: ImageProvider,
        video: VideoProvider,
        limiter: AILimiter,
        outbox: Outbox | None,
        config: PipelineConfig,
        observe: Callable[[str, float], None] | None = None,
        fallback_image: ImageProvider | None = None,
        fallback_video: VideoProvider | None = None,
        tmp_dir: Path | None = None,
        models: ModelChooser | None = None,
        progress: ProgressFactory | None = None,
        deliver: bool = True,
    ) -> None:
        #: How a generation's progress reaches its user: this process's outbox, or, on a
        #: worker, the gateway's (`flick.work.progress_relay`).
        self.progress = progress or self._message
        #: False on a worker, which holds no Telegram session: it stores the finished video
        #: and its caller hands the generation back to the gateway to send.
        self.deliver = deliver
        #: Which model each prediction asks: the style's, or its fallback while that is down.
        self.models = models or ModelChooser()
        self.tmp_dir = tmp_dir  # the downloaded videos' temporary files (None: the system's)
        self.fallback_image = fallback_image
        self.fallback_video = fallback_video
        self.storage = storage
        self.image = image
        self.video = video
        self.limiter = limiter
        self.outbox = outbox
        self.config = config
        self._observe = observe or (lambda step, seconds: None)
        self.predictions = Predictions(
            video=video, fallback_video=fallback_video, config=config, tmp_dir=tmp_dir
        )

    async def run(self, job: Job) -> None:
        record = await generations.get(job.generation_id)
        if record is None:
            raise FinalError(f"generation {job.generation_id} is gone", kind="lost")
        if not record.active:
            return  # it ended while waiting (a /cancel, a refund): nothing left to do
        run = Run(record)
        progress = self.progress(job, run)
        ts = datetime.now(UTC)
        try:
            composes = record.route != "direct"  # a direct route animates the photos themselves
            if (
                composes
                and record.status in (Status.QUEUED, Status.COMPOSING)
                and not record.combined_key
            ):
                key = combined_key(job.user_id, ts, job.style.key)
                await self._compose(job, run, progress, key)
                if job.stop_after_step:
                    # A graceful stop waited for the paid image: park the generation here, as
                    # a cancellation would (the next start animates the saved image).
                    raise asyncio.CancelledError
            if record.status is not Status.DELIVERING:
                await self._animate(job, run, progress)
            elif record.video_key is None:
                # Stopped between the download and the copy to storage: fetch it again from
                # the same prediction (nothing is paid again; Replicate keeps it for an hour).
                await self.predictions.collect(job, run)
            video = video_key(job.user_id, ts, job.style.key)
            if not self.deliver:
                await self._store_for_gateway(job, run, video)
                return
            await self._deliver(job, run, progress, video)
        except RefusedTransition:  # it ended, or moved on, elsewhere meanwhile
            job.ended_elsewhere = True
            if run.record.status is Status.CANCELED:  # a /cancel won the race
                await progress.show("status_canceled")
            # Else another process took the generation over (this one froze past its
            # heartbeat) and shows its progress: a line from here would be a false one.
        except FinalError as exc:
            with contextlib.suppress(Exception):
                await progress.show("status_failed")
            if _unreachable(exc):
                raise FinalError(
                    f"the video is made, but Telegram could not address chat {job.chat_id} "
                    f"within {self.config.deliver_budget:.0f}s (PEER_ID_INVALID: the bot's "
                    "session has no access hash for this user, e.g. its session file was lost; "
                    "the user did not block the bot)",
                    kind="unreachable",
                    user_reason="undeliverable",
                ) from exc
            raise
        except asyncio.CancelledError:
            await self.predictions.settle_cancelled(job, run)
            if job.user_canceled:
                with contextlib.suppress(Exception):
                    await asyncio.shield(progress.show("status_canceled"))
            raise
        finally:
            await transfer.discard(run.local_video)
            run.local_video = None
            await progress.forget()

    def _message(self, job: Job, run: Run) -> Progress:
        assert self.outbox is not None, "a runner without an outbox relays its progress"
        return ProgressMessage(self.outbox, job, run)

    async def _store_for_gateway(self, job: Job, run: Run, key: str) -> None:
        """On a worker: the video goes to storage; the gateway sends it from there."""
        if run.record.video_key is not None:
            return  # stored by an earlier attempt
        if run.local_video is None:  # stopped between the download and the copy: fetch it again
            await self.predictions.collect(job, run)
        assert run.local_video is not None
        failure = await transfer.store(
            self.storage, run.record, key, run.local_video, self.config.deliver_budget
        )
        if failure is not None:
            raise failure

    async def _queued(self, progress: Progress) -> Callable[[int], Awaitable[None]]:
        async def on_wait(place: int) -> None:
            await progress.show("status_queued", place=place)

        return on_wait

    async def _compose(self, job: Job, run: Run, progress: Progress, key: str) -> None:
        record = run.record
        if record.status is Status.QUEUED:
            await generations.advance(record, "compose")
        pictures = [await self.storage.get(k) for k in record.photo_keys]
        started = time.monotonic()
        try:
            async with self.limiter.slot(await self._queued(progress)):
                await progress.show("status_composing")
                # From the paid call to the saved image: a graceful stop waits for this part.
                job.paid_step = "compose"
                try:
                    image = await with_retries(
                        lambda: self.image.compose(pictures, job.style.image_prompt, job.style.key),
                        budget=self.config.compose_budget,
                        what=f"compose (generation {job.generation_id})",
                    )
                except BudgetExceededError:
                    if self.fallback_image is None:
                        raise
                    logger.warning("{} is down; composing with the local fallback", self.image.name)
                    image = await self.fallback_image.compose(
                        pictures, job.style.image_prompt, job.style.key
                    )
            self._observe("compose", time.monotonic() - started)
            try:
                jpeg = await imaging.to_jpeg(image.data)
            except (OSError, ValueError) as exc:
                raise FinalError(
                    f"the image model sent an unreadable image: {exc}",
                    kind="bad_image",
                    user_reason="no_image",
                ) from exc
            await self.storage.put(key, jpeg, "image/jpeg")
            run.combined = jpeg
            await generations.advance(
                record, "animate", combined_key=key, image_usage=dict(image.cost) or None
            )
        finally:
            job.paid_step = None

    async def _animate(self, job: Job, run: Run, progress: Progress) -> None:
        record = run.record
        route = job.style.route
        # The tier paid for; one gone from the configuration since keeps its price and key but
        # adds no inputs.
        tier = route.tier(record.tier) or Tier(record.tier or DEFAULT_TIER, {})
        if record.status is not Status.ANIMATING:
            await generations.advance(record, "animate")
        direct = record.route == "direct"
        if direct:
            pictures = [await self.storage.get(k) for k in record.photo_keys]
        else:
            assert record.combined_key is not None
            # Just composed by this run, or saved by an earlier one (read back from storage).
            pictures = [run.combined or await self.storage.get(record.combined_key)]
        started = time.monotonic()

        async def attempt(fallback: bool = False) -> float | None:
            model = record.video_model
            try:
                if record.prediction_id is None:
                    model = None if fallback else self.models.choose(route, record)
                    spec = route.spec(model)
                    inputs = model_inputs(spec, tier, job.style.video_prompt)
                    image = None
                    if not direct and spec.images == "image":
                        image = pictures[0]  # as before routes: the `image` input
                    else:
                        inputs.update(image_inputs(spec, pictures))
                    await self.predictions.create(
                        job, run, image, inputs, fallback=fallback, model=model
                    )
                predict_time = await self.predictions.collect(job, run)
            except TransientError:
                if not fallback:  # the model is down, or on its way: its circuit counts it
                    self.models.failed(model)
                raise
            if not fallback:
                self.models.succeeded(model)
            return predict_time

        async with self.limiter.slot(await self._queued(progress)):
            await progress.show("status_animating")
            try:
                predict_time = await with_retries(
                    attempt,
                    budget=self.config.animate_budget,
                    what=f"animate (generation {job.generation_id})",
                )
            except BudgetExceededError:
                # Given up on: stop its prediction, or Replicate keeps running (and billing) it.
                was_fallback = is_fallback(record.prediction_id)
                settled = await self.predictions.give_up(job, run)
                if self.fallback_video is None or was_fallback or not settled:
                    raise
                logger.warning("{} is down; animating with the local fallback", self.video.name)
                predict_time = await attempt(fallback=True)
        self._observe("animate", time.monotonic() - started)
        # Checked before the point of no return: a broken video is refunded, never sent.
        run.video_meta = await self._describe(run)
        # What the provider charges for this tier's video when the configuration says; else
        # its predict seconds at REPLICATE_USD_PER_SECOND (as before tiers): /stats' margin.
        per_second = (predict_time or 0.0) * self.config.usd_per_second
        cost = tier.usd if tier.usd is not None else per_second
        # The point of no return: from here on /cancel no longer refunds. If a /cancel got
        # here first, this is refused and the video is never sent.
        await generations.advance(record, "deliver", predict_seconds=predict_time, cost_usd=cost)
        if self.deliver:  # a worker's job lasts until its video is stored and handed back
            job.ai_done.set()

    async def _describe(self, run: Run) -> VideoMeta:
        """Probe the downloaded video and make its thumbnail from the composed picture."""
        local = run.local_video
        assert local is not None
        key = run.record.combined_key
        probing = asyncio.ensure_future(probe_video(local))  # meanwhile, the picture from S3
        try:
            picture = await self.storage.get(key) if key else None
        except BaseException:
            probing.cancel()
            await asyncio.gather(probing, return_exceptions=True)
            raise
        try:
            return await with_thumbnail(await probing, local, picture)
        except MediaError as exc:
            raise _broken(exc) from exc

    async def _deliver(self, job: Job, run: Run, progress: Progress, key: str) -> None:
        """Send the video. A just downloaded copy (`run.local_video`, not in storage yet) goes
        to storage and to Telegram at once; the generation is done once both are."""
        record = run.record
        local = run.local_video
        video = record.video_key or key
        if run.video_meta is None and local is not None:  # resumed: downloaded again
            run.video_meta = await self._describe(run)
        meta = run.video_meta  # None (resumed from storage): the outbox reads the stored copy
        await progress.show("status_sending")
        started = time.monotonic()
        again = job.generation_id  # the same photos once more: see actors/handlers/again.py
        keyboard: Keyboard = (
            (
                Button(t(job.lang, "button_try_again"), data=f"retry:{again}"),
                Button(t(job.lang, "button_again_style"), data=f"again:{again}"),
            ),
            (
                Button(t(job.lang, "button_another"), data="create"),
                Button(t(job.lang, "button_buy"), data="buy"),
            ),
        )
        caption = t(job.lang, "video_caption", style=job.style.label(job.lang))

        outbox = self.outbox
        assert outbox is not None, "a runner without an outbox hands its videos back"

        async def send() -> str | None:
            try:
                return await outbox.send_video(
                    job.chat_id, video, caption, keyboard, local_path=local, meta=meta
                )
            except RecipientGone:  # they blocked the bot meanwhile: their actor is told
                return None
            except RecipientUnreachable as exc:  # not a block: retried within the budget
                raise TransientError(f"sending the video: {exc}", kind="unreachable") from exc
            except TelegramRefused as exc:
                raise FinalError(str(exc), kind="telegram", user_reason="undeliverable") from exc
            except MediaError as exc:  # the stored copy of a resumed generation is broken
                raise _broken(exc) from exc
            except (OSError, TimeoutError) as exc:
                raise TransientError(f"sending the video: {exc}", kind="telegram") from exc

        sending = with_retries(
            send,
            budget=self.config.deliver_budget,
            what=f"deliver (generation {job.generation_id})",
        )
        if local is None:  # already in storage (a resumed generation): sent from there
            file_id = await sending
        else:
            file_id = await transfer.send_while_storing(
                sending, self.storage, record, key, local, self.config.deliver_budget
            )
        self._observe("deliver", time.monotonic() - started)
        if file_id is None:
            job.recipient_gone = True
        await generations.advance(record, "delivered", video_file_id=file_id)
        await progress.show("status_done")


def _broken(exc: MediaError) -> FinalError:
    return FinalError(
        f"the video model sent a broken video: {exc}", kind="bad_video", user_reason="bad_output"
    )


def _unreachable(exc: BaseException) -> bool:
    """Did delivery give up because Telegram could not address the chat?"""
    cause = exc.__cause__
    return isinstance(cause, TransientError) and cause.kind == "unreachable"


__all__ = [
    "FALLBACK_PREFIX",
    "BudgetExceededError",
    "GenerationRunner",
    "Job",
    "PipelineConfig",
]
