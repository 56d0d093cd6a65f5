"""The journal of handled updates: recorded in batches, pruned by age, flushed on stop.

One statement per batch rather than one per update (per-update database round trips are the
engine's main cost). What is lost with a SIGKILL is at most the last batch interval's ids: those
updates, redelivered, are handled again — the same window any at-least-once consumer has.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from loguru import logger

from flick.errors import is_transient
from flick.models import updates

FLUSH_SECONDS = 0.05
KEEP_DAYS = 3.0  # Telegram keeps undelivered updates for about a day
MAX_PENDING = 100_000  # while the database is down: bounded memory, oldest dropped first


class UpdateJournal:
    def __init__(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.flush_seconds = flush_seconds
        self._pending: list[tuple[int, str]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(self, user_id: int, event_id: str) -> None:
        self._pending.append((user_id, event_id))
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
        self._wake.set()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            await updates.record(batch)
        except BaseException:
            self._pending[:0] = batch  # tried again at the next flush
            raise

    async def _loop(self) -> None:
        pruned_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.flush_seconds)  # gather a batch
            try:
                await self.flush()
                if loop.time() - pruned_at > 3600:
                    await updates.prune(KEEP_DAYS)
                    pruned_at = loop.time()
            except Exception as exc:  # noqa: BLE001 - the journal must outlive any one failure
                if is_transient(exc):
                    logger.warning("handled updates not recorded yet ({}); retrying", exc)
                else:
                    logger.opt(exception=exc).error("handled updates not recorded; retrying")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def __aenter__(self) -> UpdateJournal:
        self._task = asyncio.create_task(self._loop(), name="update-journal")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()
