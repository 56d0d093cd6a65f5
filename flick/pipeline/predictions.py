"""The animate step's video predictions: creating, adopting, collecting, cancelling, giving up.

A provider bills a prediction from the moment it accepts it, so its id is saved on the generation's
row before anything waits on it, a create whose id never arrived is adopted rather than paid for
again, and a prediction given up on is cancelled, even one whose create is still unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from flick.errors import FinalError, TransientError
from flick.models import generations
from flick.pipeline import imaging, transfer
from flick.pipeline.classify import classify_prediction
from flick.pipeline.job import Job, PipelineConfig, Run
from flick.ports import VideoProvider

#: Marks a prediction id of the fallback video provider, as saved on the row.
FALLBACK_PREFIX = "local:"
#: Tasks cancelling predictions that arrived after their step gave up on them.
_LATE: set[asyncio.Task[None]] = set()


def _signed(value: Any, note: str) -> Any:
    """A picture input (bytes, or a list of them) with the generation's note in it."""
    if isinstance(value, bytes):
        return imaging.with_comment(value, note)
    if isinstance(value, list) and value and all(isinstance(v, bytes) for v in value):
        return [imaging.with_comment(v, note) for v in value]
    return value


def is_fallback(pid: str | None) -> bool:
    return bool(pid) and str(pid).startswith(FALLBACK_PREFIX)


class Predictions:
    """One runner's predictions, on its video provider or, once that is down, the fallback."""

    def __init__(
        self,
        *,
        video: VideoProvider,
        fallback_video: VideoProvider | None,
        config: PipelineConfig,
        tmp_dir: Path | None,
    ) -> None:
        self.video = video
        self.fallback_video = fallback_video
        self.config = config
        self.tmp_dir = tmp_dir

    async def create(
        self,
        job: Job,
        run: Run,
        image: bytes | None,
        inputs: Mapping[str, Any],
        *,
        fallback: bool = False,
        model: str | None = None,
    ) -> None:
        """Start the step's prediction, or adopt the one a lost create left, and save its id.

        `image` goes in the model's `image` input; pictures may also come as inputs given as
        bytes (a direct route's photos). `model`: the style's model (None: the provider's own),
        saved on the row before the create so that a resumed run looks for it on that model.
        """
        provider = self.fallback_video if fallback else self.video
        assert provider is not None

        async def create_and_save() -> None:
            # Each picture names the generation, so the provider's copy of a lost create's input
            # can only match this generation's.
            note = f"flick generation {job.generation_id}"
            sent = imaging.with_comment(image, note) if image is not None else None
            plain = {k: _signed(v, note) for k, v in inputs.items()}
            tried = run.tried
            asked = run.record.prediction_requested_at
            pid = None
            if asked is not None:
                # A create was asked for before and its id never saved (a kill, a lost answer):
                # the provider may have accepted it, and bills it. Adopt it.
                pid = await provider.find_accepted(
                    sent, "image/jpeg", plain, since=asked, skip=tried, model=model
                )
            if pid is None:
                await generations.save(
                    run.record, prediction_requested_at=datetime.now(UTC), video_model=model
                )
                pid = await provider.start(sent, "image/jpeg", plain, model=model)
            tried.add(pid)  # never adopted again by this run once given up on
            if fallback:
                pid = FALLBACK_PREFIX + pid
            # Saved before waiting on it: after a restart we poll this one, never pay again.
            await generations.save(run.record, prediction_id=pid)

        # Replicate bills a prediction once it accepts it: a stop or a /cancel arriving meanwhile
        # must not lose its id (`settle_cancelled` and `give_up` wait for this).
        creating = asyncio.ensure_future(create_and_save())
        run.creating = creating
        await asyncio.shield(creating)

    async def collect(self, job: Job, run: Run) -> float | None:
        """Poll the run's prediction to its end and download its video (to `run.local_video`);
        returns its predict time."""
        assert run.record.prediction_id is not None
        provider, pid = self.provider_for(run.record.prediction_id)
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
            if prediction.status == "aborted":
                # Ended before it ran: nothing was billed, so a fresh prediction is fair.
                await self._forget(run)
                raise TransientError(f"prediction {pid} was aborted before it ran", kind="aborted")
            if (
                prediction.status == "starting"
                and time.monotonic() - first_seen > self.config.starting_timeout
            ):
                # It never got a machine: nothing was billed, so a fresh prediction is fair.
                await self.cancel(run.record.prediction_id)
                await self._forget(run)
                raise TransientError(f"prediction {pid} stayed starting", kind="stuck_starting")
            await asyncio.sleep(self.config.poll_interval)
        # Replicate deletes outputs after about an hour: copy it before anything else, to local
        # disk (quick, so the slot is soon free); delivery stores it and sends it from there.
        await transfer.discard(run.local_video)
        run.local_video = None
        try:
            run.local_video = await transfer.download(
                provider.open_output(prediction), self.tmp_dir, self.config.max_video_bytes
            )
        except ValueError as exc:
            raise FinalError(str(exc), kind="video_too_large", user_reason="video_failed") from exc
        return prediction.predict_time

    async def _forget(self, run: Run) -> None:
        await generations.save(run.record, prediction_id=None)

    async def give_up(self, job: Job, run: Run) -> bool:
        """Cancel the step's prediction and clear it from the row; False when it is unsettled.

        The budget may run out while `create` still waits for the provider's answer:
        the provider bills a prediction from the moment it accepts it, so that create is waited
        for (shielded, at most `create_grace` seconds) and what it created is cancelled too. If it
        is still unanswered then, whatever it creates later is cancelled when it arrives, and the
        step must not start another prediction meanwhile (the late one would overwrite its id).
        """
        creating = run.creating
        if creating is not None and not creating.done():
            # asyncio.wait never cancels what it waits for, on its timeout or on a stop.
            await asyncio.wait({creating}, timeout=self.config.create_grace)
            if not creating.done():
                logger.warning(
                    "generation {}: the prediction being created is still unanswered after "
                    "{:.0f}s; it will be cancelled when it arrives",
                    job.generation_id,
                    self.config.create_grace,
                )
                late = asyncio.ensure_future(self._cancel_when_created(run, creating))
                _LATE.add(late)
                late.add_done_callback(_LATE.discard)
                return False
        pid = run.record.prediction_id
        if pid:
            await asyncio.shield(self.cancel(pid))
            await asyncio.shield(generations.save(run.record, prediction_id=None))
        return True

    async def settle_cancelled(self, job: Job, run: Run) -> None:
        """The run is being cancelled: let a create under way save its id, and on the user's
        /cancel cancel the prediction (a shutdown leaves it running for the next start)."""
        creating = run.creating
        if creating is not None and not creating.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(creating)
        pid = run.record.prediction_id
        if job.user_canceled and pid is None:
            fresh = await generations.get(job.generation_id)
            pid = fresh.prediction_id if fresh else None
        if job.user_canceled and pid:
            # Best effort: the user is refunded whatever Replicate says.
            await asyncio.shield(self.cancel(pid))

    async def cancel(self, pid: str) -> None:
        """Cancel a prediction by its saved id, best effort."""
        provider, raw_id = self.provider_for(pid)
        try:
            await provider.cancel(raw_id)
        except Exception as exc:  # noqa: BLE001 - cancelling is best effort
            logger.warning("could not cancel prediction {}: {}", pid, exc)

    def provider_for(self, pid: str) -> tuple[VideoProvider, str]:
        """The provider of a saved prediction id, and its id there."""
        if is_fallback(pid) and self.fallback_video is not None:
            return self.fallback_video, pid[len(FALLBACK_PREFIX) :]
        return self.video, pid

    async def _cancel_when_created(self, run: Run, creating: asyncio.Future[None]) -> None:
        await asyncio.wait({creating})
        if creating.cancelled() or creating.exception() is not None:
            return  # nothing was created
        pid = run.record.prediction_id
        if pid:
            await self.cancel(pid)
            await generations.save(run.record, prediction_id=None)
