"""The generations running in this process: one task each, cancelable, stopped at a resumable
point. Used by the gateway's supervisor and by `flick worker` alike; what each does with an
outcome (the user's actor, or a job handed back to the gateway) is its `on_end`.

A job's handler awaits `run`: the generation runs as a task of its own, so a user's /cancel
cancels the generation, never the queue's handler, and the handler still learns how it ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger

from flick.errors import FinalError, is_transient
from flick.ops.sentry import capture_generation_failure
from flick.pipeline.job import Job

RunJob = Callable[[Job], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Ended:
    """How a generation's run ended here: `error` None is delivered, or handed on, or ended
    elsewhere (a /cancel that won the race)."""

    job: Job
    error: FinalError | None


class Parked(Exception):  # noqa: N818 - a stop, not a failure
    """The process is stopping: the generation was left at a resumable point, for whoever
    takes its job next."""


class GenerationTasks:
    def __init__(self, run: RunJob, on_end: Callable[[Ended], Awaitable[None]]) -> None:
        self._run = run
        self._on_end = on_end
        self._running: dict[int, tuple[Job, asyncio.Task[None]]] = {}
        self._stopping = False

    def __len__(self) -> int:
        return len(self._running)

    def running(self, generation_id: int) -> bool:
        return generation_id in self._running

    async def run(self, job: Job) -> None:
        """Run the generation here until its end, or until its AI work is done and this process
        sends the video (the sending goes on, tracked here). Raises Parked when a stop
        interrupted it."""
        if self._stopping:
            raise Parked(f"generation {job.generation_id}: this process is stopping")
        if job.generation_id in self._running:
            # Ours already (a late heartbeat let the queue hand it over twice): wait for it.
            _, task = self._running[job.generation_id]
            await asyncio.wait({task})
            return
        task = asyncio.create_task(self._generate(job), name=f"generation-{job.generation_id}")
        self._running[job.generation_id] = (job, task)
        task.add_done_callback(lambda _: self._running.pop(job.generation_id, None))
        ai_done = asyncio.ensure_future(job.ai_done.wait())
        try:
            # A cancel of the handler is not a cancel of the task.
            await asyncio.wait({task, ai_done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ai_done.cancel()
        if not task.done():
            return  # being delivered from here: its AI seat goes to the next generation
        if task.cancelled() and not job.user_canceled:
            raise Parked(f"generation {job.generation_id} parked")
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc

    async def _generate(self, job: Job) -> None:
        error: FinalError | None = None
        try:
            await self._run_through_blips(job)
        except asyncio.CancelledError:
            if job.user_canceled:
                return  # the actor already refunded
            raise  # a stop: the row says where to resume
        except FinalError as exc:
            error = exc
            capture_generation_failure(job.generation_id, job.user_id, exc)
        except Exception as exc:  # noqa: BLE001 - any other failure still refunds
            logger.opt(exception=exc).bind(user_id=job.user_id).error(
                "generation {} failed unexpectedly", job.generation_id
            )
            capture_generation_failure(job.generation_id, job.user_id, exc)
            error = FinalError(str(exc) or type(exc).__name__, kind=type(exc).__name__)
        await self._on_end(Ended(job, error))

    async def _run_through_blips(self, job: Job) -> None:
        """Run a generation; when our database or storage failed it for a while, resume it from
        its record (which never pays twice for a step) instead of refunding a failure of ours."""
        delay = 0.5
        while True:
            try:
                await self._run(job)
                return
            except Exception as exc:
                if isinstance(exc, FinalError) or not is_transient(exc):
                    raise
                logger.bind(user_id=job.user_id).warning(
                    "generation {} interrupted ({}); resuming it in {:.1f}s",
                    job.generation_id,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def cancel(self, generation_id: int) -> bool:
        """A user's /cancel (already refunded): stop the run and its prediction."""
        entry = self._running.get(generation_id)
        if entry is None:
            return False
        job, task = entry
        job.user_canceled = True
        task.cancel()
        return True

    async def stop(self, deadline: float) -> None:
        """Stop every generation at a resumable point by `deadline` (the loop's clock).

        One inside a paid step whose result is not saved yet (the image model composing) may
        finish that step until the deadline: cancelled, it would be paid again after the
        restart. The others (waiting for a seat, animating: resumable from the saved prediction
        id) are stopped at once, so none starts a paid step.
        """
        self._stopping = True
        loop = asyncio.get_running_loop()
        finishing: list[asyncio.Task[None]] = []
        for job, task in list(self._running.values()):
            job.user_canceled = False
            if job.paid_step is None:
                task.cancel()
            else:  # it parks itself once the step's result is saved (or ends if the step fails)
                job.stop_after_step = True
                finishing.append(task)
        if finishing:
            logger.info("letting {} paid step(s) finish before stopping", len(finishing))
            await asyncio.wait(finishing, timeout=max(0.0, deadline - loop.time()))
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
