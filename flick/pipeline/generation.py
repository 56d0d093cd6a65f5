"""One generation, step by step: compose → animate → deliver, resumable from the row at each step.

The runner never touches the balance: it raises a FinalError and the user's actor refunds. Each
step first looks at what the row already holds, so a restarted Flick never pays twice for a step:
a stored combined image is reused, an existing prediction is polled instead of created again.
The animate step's predictions are handled by `predictions`, the chat's status line by `status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from flick.actors.limiter import AILimiter
from flick.errors import BudgetExceededError, FinalError, TransientError
from flick.i18n import t
from flick.models import queries
from flick.pipeline import photos, transfer
from flick.pipeline.job import Job, PipelineConfig
from flick.pipeline.predictions import FALLBACK_PREFIX, LOCAL_VIDEO, Predictions, is_fallback
from flick.pipeline.retry import with_retries
from flick.pipeline.status import StatusMessage
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
from flick.storage import combined_key, video_key


class GenerationRunner:
    def __init__(
        self,
        *,
        storage: Storage,
        image: ImageProvider,
        video: VideoProvider,
        limiter: AILimiter,
        outbox: Outbox,
        config: PipelineConfig,
        observe: Callable[[str, float], None] | None = None,
        fallback_image: ImageProvider | None = None,
        fallback_video: VideoProvider | None = None,
        tmp_dir: Path | None = None,
    ) -> None:
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
        row = await queries.get_generation(job.generation_id)
        if row is None:
            raise FinalError(f"generation {job.generation_id} is gone", kind="lost")
        status = StatusMessage(self.outbox, job, row.get("status_message_id"))
        ts = datetime.now(UTC)
        try:
            combined = row["combined_key"]
            if combined is None:
                combined = await self._compose(
                    job, row, status, combined_key(job.user_id, ts, job.style.key)
                )
                if job.stop_after_step:
                    # A graceful stop waited for the paid image: park the generation here, as
                    # a cancellation would (the next start animates the saved image).
                    raise asyncio.CancelledError
            video = row["video_key"]
            if video is None:
                video = await self._animate(
                    job, row, status, combined, video_key(job.user_id, ts, job.style.key)
                )
            await self._deliver(job, status, video, row.get(LOCAL_VIDEO))
        except FinalError as exc:
            # The status message must not keep saying "animating…" after a failure.
            with contextlib.suppress(Exception):
                await status.show("status_failed")
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
            await self.predictions.settle_cancelled(job, row)
            raise
        finally:
            await transfer.discard(row.pop(LOCAL_VIDEO, None))
            await status.forget()

    async def _queued(self, status: StatusMessage) -> Callable[[int], Awaitable[None]]:
        async def on_wait(place: int) -> None:
            await status.show("status_queued", place=place)

        return on_wait

    async def _compose(self, job: Job, row: dict[str, Any], status: StatusMessage, key: str) -> str:
        await queries.update_generation(job.generation_id, status="composing")
        pictures = [
            await self.storage.get(row["photo1_key"]),
            await self.storage.get(row["photo2_key"]),
        ]
        started = time.monotonic()
        try:
            async with self.limiter.slot(await self._queued(status)):
                await status.show("status_composing")
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
                jpeg = await photos.to_jpeg(image.data)
            except (OSError, ValueError) as exc:
                raise FinalError(
                    f"the image model sent an unreadable image: {exc}",
                    kind="bad_image",
                    user_reason="no_image",
                ) from exc
            await self.storage.put(key, jpeg, "image/jpeg")
            await queries.update_generation(
                job.generation_id,
                combined_key=key,
                image_usage=dict(image.cost) or None,
                status="animating",
            )
        finally:
            job.paid_step = None
        return key

    async def _animate(
        self, job: Job, row: dict[str, Any], status: StatusMessage, combined: str, key: str
    ) -> str:
        await queries.update_generation(job.generation_id, status="animating")
        image = await self.storage.get(combined)
        inputs = {"prompt": job.style.video_prompt, **job.style.video_inputs}
        started = time.monotonic()

        async def attempt(fallback: bool = False) -> float | None:
            if row.get("prediction_id") is None:
                await self.predictions.create(job, row, image, inputs, fallback=fallback)
            return await self.predictions.collect(job, row)

        async with self.limiter.slot(await self._queued(status)):
            await status.show("status_animating")
            try:
                predict_time = await with_retries(
                    attempt,
                    budget=self.config.animate_budget,
                    what=f"animate (generation {job.generation_id})",
                )
            except BudgetExceededError:
                # Given up on: stop its prediction, or Replicate keeps running (and billing) it.
                was_fallback = is_fallback(row.get("prediction_id"))
                settled = await self.predictions.give_up(job, row)
                if self.fallback_video is None or was_fallback or not settled:
                    raise
                logger.warning("{} is down; animating with the local fallback", self.video.name)
                predict_time = await attempt(fallback=True)
        self._observe("animate", time.monotonic() - started)
        cost = (predict_time or 0.0) * self.config.usd_per_second
        await queries.update_generation(
            job.generation_id,
            predict_seconds=predict_time,
            cost_usd=cost,
            status="delivering",
        )
        return key

    async def _deliver(
        self, job: Job, status: StatusMessage, video: str, local: Path | None = None
    ) -> None:
        """Send the video. `local`: the just downloaded copy, not in storage yet; then it goes to
        storage and to Telegram at once, and the generation is done once both are."""
        await status.show("status_sending")
        started = time.monotonic()
        keyboard: Keyboard = (
            (
                Button(t(job.lang, "button_another"), data="create"),
                Button(t(job.lang, "button_buy"), data="buy"),
            ),
        )
        caption = t(job.lang, "video_caption", style=job.style.label(job.lang))

        async def send() -> str | None:
            try:
                return await self.outbox.send_video(
                    job.chat_id, video, caption, keyboard, local_path=local
                )
            except RecipientGone:  # they blocked the bot meanwhile: stop messaging them
                await queries.set_blocked(job.user_id)
                return None
            except RecipientUnreachable as exc:  # not a block: retried within the budget
                raise TransientError(f"sending the video: {exc}", kind="unreachable") from exc
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
                sending, self.storage, job.generation_id, video, local, self.config.deliver_budget
            )
        self._observe("deliver", time.monotonic() - started)
        await queries.finish_generation(job.generation_id, file_id)
        await status.delete_or_done()


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
