"""One generation, step by step: compose → animate → deliver, resumable from the row at each step.

The runner never touches the balance: it raises a FinalError and the user's actor refunds. Each
step first looks at what the row already holds, so a restarted Flick never pays twice for a step:
a stored combined image is reused, an existing prediction is polled instead of created again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from flick.actors.limiter import AILimiter
from flick.errors import BudgetExceededError, FinalError, TransientError
from flick.i18n import t
from flick.models import queries
from flick.pipeline import photos
from flick.pipeline.classify import classify_prediction
from flick.pipeline.retry import with_retries
from flick.ports import (
    Button,
    ImageProvider,
    Keyboard,
    Outbox,
    RecipientGone,
    Storage,
    VideoProvider,
)
from flick.storage import combined_key, video_key
from flick.styles import Style

FALLBACK_PREFIX = "local:"


def _is_fallback(pid: str | None) -> bool:
    return bool(pid) and str(pid).startswith(FALLBACK_PREFIX)


@dataclass
class Job:
    generation_id: int
    user_id: int
    chat_id: int
    lang: str
    style: Style
    # Set before the task is cancelled: a user's /cancel also cancels the prediction, a shutdown
    # leaves it running so the next start can collect it.
    user_canceled: bool = False


@dataclass(frozen=True)
class PipelineConfig:
    compose_budget: float = 180.0
    animate_budget: float = 600.0
    deliver_budget: float = 300.0
    poll_interval: float = 2.0
    starting_timeout: float = 300.0
    max_video_bytes: int = 200 * 1024 * 1024
    usd_per_second: float = 0.0


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
    ) -> None:
        self.fallback_image = fallback_image
        self.fallback_video = fallback_video
        self.storage = storage
        self.image = image
        self.video = video
        self.limiter = limiter
        self.outbox = outbox
        self.config = config
        self._observe = observe or (lambda step, seconds: None)

    async def run(self, job: Job) -> None:
        row = await queries.get_generation(job.generation_id)
        if row is None:
            raise FinalError(f"generation {job.generation_id} is gone", kind="lost")
        status = _Status(self.outbox, job, row.get("status_message_id"))
        ts = datetime.now(UTC)
        try:
            combined = row["combined_key"]
            if combined is None:
                combined = await self._compose(
                    job, row, status, combined_key(job.user_id, ts, job.style.key)
                )
            video = row["video_key"]
            if video is None:
                video = await self._animate(
                    job, row, status, combined, video_key(job.user_id, ts, job.style.key)
                )
            await self._deliver(job, status, video)
        except FinalError:
            # The status message must not keep saying "animating…" after a failure.
            with contextlib.suppress(Exception):
                await status.show("status_failed")
            raise
        except asyncio.CancelledError:
            creating = row.get("_creating")
            if creating is not None and not creating.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(creating)
            if job.user_canceled and row.get("prediction_id") is None:
                fresh = await queries.get_generation(job.generation_id)
                row["prediction_id"] = fresh and fresh.get("prediction_id")
            if job.user_canceled and row.get("prediction_id"):
                # Best effort: the user is refunded whatever Replicate says.
                await asyncio.shield(self._cancel_prediction(row["prediction_id"]))
            raise
        finally:
            await status.forget()

    async def _queued(self, status: _Status) -> Callable[[int], Awaitable[None]]:
        async def on_wait(place: int) -> None:
            await status.show("status_queued", place=place)

        return on_wait

    async def _compose(self, job: Job, row: dict[str, Any], status: _Status, key: str) -> str:
        await queries.update_generation(job.generation_id, status="composing")
        pictures = [
            await self.storage.get(row["photo1_key"]),
            await self.storage.get(row["photo2_key"]),
        ]
        started = time.monotonic()
        async with self.limiter.slot(await self._queued(status)):
            await status.show("status_composing")
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
        return key

    async def _animate(
        self, job: Job, row: dict[str, Any], status: _Status, combined: str, key: str
    ) -> str:
        await queries.update_generation(job.generation_id, status="animating")
        image = await self.storage.get(combined)
        inputs = {"prompt": job.style.video_prompt, **job.style.video_inputs}
        started = time.monotonic()

        async def attempt(fallback: bool = False) -> tuple[str, float | None]:
            if row.get("prediction_id") is None:
                provider = self.fallback_video if fallback else self.video
                assert provider is not None

                async def create_and_save() -> None:
                    pid = await provider.start(image, "image/jpeg", inputs)
                    if fallback:
                        pid = FALLBACK_PREFIX + pid
                    # Saved before waiting on it: after a restart we poll this one, never pay
                    # again.
                    row["prediction_id"] = pid
                    await queries.update_generation(job.generation_id, prediction_id=pid)

                # Replicate bills a prediction once it accepts it: a stop or a /cancel arriving
                # meanwhile must not lose its id (the cancel handler in `run` waits for this).
                creating = asyncio.ensure_future(create_and_save())
                row["_creating"] = creating
                await asyncio.shield(creating)
            return await self._collect(job, row, key)

        async with self.limiter.slot(await self._queued(status)):
            await status.show("status_animating")
            try:
                _, predict_time = await with_retries(
                    attempt,
                    budget=self.config.animate_budget,
                    what=f"animate (generation {job.generation_id})",
                )
            except BudgetExceededError:
                if self.fallback_video is None or _is_fallback(row.get("prediction_id")):
                    # Given up on: stop it, or Replicate keeps running (and billing) it.
                    if row.get("prediction_id"):
                        await asyncio.shield(self._cancel_prediction(row["prediction_id"]))
                    raise
                logger.warning("{} is down; animating with the local fallback", self.video.name)
                if row.get("prediction_id"):
                    await self._cancel_prediction(row["prediction_id"])
                row["prediction_id"] = None
                _, predict_time = await attempt(fallback=True)
        self._observe("animate", time.monotonic() - started)
        cost = (predict_time or 0.0) * self.config.usd_per_second
        await queries.update_generation(
            job.generation_id,
            video_key=key,
            predict_seconds=predict_time,
            cost_usd=cost,
            status="delivering",
        )
        return key

    def _provider_for(self, pid: str) -> tuple[VideoProvider, str]:
        if _is_fallback(pid) and self.fallback_video is not None:
            return self.fallback_video, pid[len(FALLBACK_PREFIX) :]
        return self.video, pid

    async def _collect(self, job: Job, row: dict[str, Any], key: str) -> tuple[str, float | None]:
        provider, pid = self._provider_for(row["prediction_id"])
        first_seen = time.monotonic()
        while True:
            prediction = await provider.poll(pid)
            if prediction.status == "succeeded":
                break
            if prediction.status in ("failed", "canceled"):
                raise classify_prediction(prediction) or FinalError(
                    f"prediction {pid} {prediction.status}",
                    kind="prediction_failed",
                    user_reason="video_failed",
                )
            if (
                prediction.status == "starting"
                and time.monotonic() - first_seen > self.config.starting_timeout
            ):
                # It never got a machine: nothing was billed, so a fresh prediction is fair.
                await self._cancel_prediction(row["prediction_id"])
                row["prediction_id"] = None
                await queries.update_generation(job.generation_id, prediction_id=None)
                raise TransientError(f"prediction {pid} stayed starting", kind="stuck_starting")
            await asyncio.sleep(self.config.poll_interval)
        # Replicate deletes outputs after about an hour: copy it before anything else.
        try:
            await self.storage.put_stream(
                key, provider.open_output(prediction), "video/mp4", self.config.max_video_bytes
            )
        except ValueError as exc:
            raise FinalError(str(exc), kind="video_too_large", user_reason="video_failed") from exc
        return key, prediction.predict_time

    async def _deliver(self, job: Job, status: _Status, video: str) -> None:
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
                return await self.outbox.send_video(job.chat_id, video, caption, keyboard)
            except RecipientGone:  # they blocked the bot meanwhile: stop messaging them
                await queries.set_blocked(job.user_id)
                return None
            except (OSError, TimeoutError) as exc:
                raise TransientError(f"sending the video: {exc}", kind="telegram") from exc

        file_id = await with_retries(
            send,
            budget=self.config.deliver_budget,
            what=f"deliver (generation {job.generation_id})",
        )
        self._observe("deliver", time.monotonic() - started)
        await queries.finish_generation(job.generation_id, file_id)
        await status.delete_or_done()

    async def _cancel_prediction(self, pid: str) -> None:
        provider, raw_id = self._provider_for(pid)
        try:
            await provider.cancel(raw_id)
        except Exception as exc:  # noqa: BLE001 - cancelling is best effort
            logger.warning("could not cancel prediction {}: {}", pid, exc)


class _Status:
    """The one status message of a generation, edited as it moves."""

    def __init__(self, outbox: Outbox, job: Job, message_id: int | None) -> None:
        self.outbox = outbox
        self.job = job
        self.message_id = message_id
        self.last: str | None = None

    async def show(self, key: str, **values: object) -> None:
        text = t(self.job.lang, key, style=self.job.style.label(self.job.lang), **values)
        if text == self.last:
            return
        self.last = text
        try:
            if self.message_id is None:
                self.message_id = await self.outbox.send_text(self.job.chat_id, text)
                await queries.update_generation(
                    self.job.generation_id, status_message_id=self.message_id
                )
            else:
                await self.outbox.edit_text(self.job.chat_id, self.message_id, text)
        except RecipientGone:
            pass

    async def delete_or_done(self) -> None:
        await self.show("status_done")

    async def forget(self) -> None:
        self.last = None


__all__ = ["BudgetExceededError", "GenerationRunner", "Job", "PipelineConfig"]
