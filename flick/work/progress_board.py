"""Progress lines for generations this process does not run: those waiting in the queue (their
place, told again as it changes) and those a worker runs (its lines, relayed by NOTIFY). On the
gateway only: it holds the Telegram session. A generation this process runs shows its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

from loguru import logger

from flick.fsm.generation import Status
from flick.models import generation_jobs
from flick.pipeline.job import Job, Run
from flick.pipeline.progress import ProgressMessage
from flick.ports import Outbox
from flick.styles import Style
from flick.work import signals
from flick.work.job_records import job_for

_ENDS = frozenset({"status_done", "status_failed", "status_canceled"})
#: How long a generation waits for a seat before it is told its place.
NEWCOMER_WAIT = 1.0


class RelayedProgress:
    """A worker's progress: each new line goes to the gateway's board."""

    def __init__(self, job: Job, run: Run) -> None:
        self.job = job
        self.last: tuple[str, dict[str, Any]] | None = None

    async def show(self, key: str, **values: object) -> None:
        line = (key, dict(values))
        if line == self.last:
            return
        self.last = line
        await signals.progress(self.job.generation_id, key, dict(values))

    async def forget(self) -> None:
        self.last = None


class ProgressBoard:
    def __init__(
        self,
        outbox: Outbox,
        styles: dict[str, Style],
        *,
        seats: int,
        every: float = 5.0,
        is_local: Any = lambda generation_id: False,
    ) -> None:
        self.seats = seats
        self.outbox = outbox
        self.styles = styles
        self.every = every
        self._is_local = is_local
        self._shown: dict[int, ProgressMessage] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def poke(self) -> None:
        """The queue changed (pgqueuer's own NOTIFY): tell places soon, not at the next round."""
        self._changed.set()

    async def __aenter__(self) -> ProgressBoard:
        self._task = asyncio.create_task(self._tell_places(), name="queue-places")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def show(self, generation_id: int, key: str, values: dict[str, Any]) -> None:
        """A line for a generation: from a worker, or its place in the queue."""
        shown = self._shown.get(generation_id)
        if shown is None:
            found = await job_for(generation_id, self.styles)
            if found is None or found.job is None:
                return
            shown = ProgressMessage(self.outbox, found.job, Run(found.record))
            self._shown[generation_id] = shown
        await shown.show(key, **values)
        if key in _ENDS:
            self._shown.pop(generation_id, None)

    async def _tell_places(self) -> None:
        """Everyone's place every `every` seconds (an edit only where it changed, as Telegram
        allows); a newcomer's first place once it has waited a second for a seat."""
        loop = asyncio.get_running_loop()
        next_round = loop.time()
        while True:
            self._changed.clear()
            everyone = loop.time() >= next_round
            if everyone:
                next_round = loop.time() + self.every
            try:
                await self.tell_places(newcomers_only=not everyone)
            except Exception as exc:  # noqa: BLE001 - the next round tells them
                logger.opt(exception=exc).warning("telling queue places failed")
            with contextlib.suppress(TimeoutError):
                wait = min(NEWCOMER_WAIT, max(0.0, next_round - loop.time()))
                await asyncio.wait_for(self._changed.wait(), wait)
            await asyncio.sleep(0.1)  # a burst of changes is told once

    async def tell_places(self, newcomers_only: bool = False) -> None:
        """Tell each generation waiting for a seat its place (1: next to get one)."""
        try:
            waiting = await generation_jobs.waiting_for_a_seat(NEWCOMER_WAIT, self.seats)
        except Exception as exc:  # noqa: BLE001 - the next round tells them
            logger.debug("queue places: {}", exc)
            return
        for place, generation_id in enumerate(waiting, start=1):
            if self._is_local(generation_id):
                continue  # taken by this process since: it shows its own progress
            shown = self._shown.get(generation_id)
            if shown is not None and (
                newcomers_only or shown.run.record.status is not Status.QUEUED
            ):
                continue
            await self.show(generation_id, "status_queued", {"place": place})
        for generation_id in set(self._shown) - set(waiting):
            self._shown.pop(generation_id, None)  # taken: its runner shows the rest
