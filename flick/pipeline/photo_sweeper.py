"""Photos are kept for PHOTO_KEEP_HOURS after they arrive ("Another style" and "Try again" under
a video reuse them), then deleted from storage by this sweeper.

A photo is never deleted while a generation queued or under way needs it, nor while a
conversation holds it (collected, waiting for the second photo or for credit): those go on a
later sweep. The age comes from the photo's key (`storage.photo_key` stamps the arrival time),
so a sweep costs one listing and one database query, whatever the number of photos.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from loguru import logger

from flick.models import photos
from flick.ports import Storage
from flick.storage import photo_time

PREFIX = "photos/"


def expired(key: str, now: datetime, keep: timedelta) -> bool:
    """Is this photo past its keeping time? A key without a time is kept (not ours to judge)."""
    at = photo_time(key)
    return at is not None and at + keep <= now


class PhotoSweeper:
    """`async with PhotoSweeper(storage, keep, every):` sweeps at once, then every `every` seconds,
    until the block ends. `sweep()` runs one pass (tests, `now` to look ahead)."""

    def __init__(self, storage: Storage, keep: timedelta, every: float) -> None:
        self.storage = storage
        self.keep = keep
        self.every = every
        self.deleted = 0  # photos deleted since start (for the logs and the tests)
        self._task: asyncio.Task[None] | None = None

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete every photo past its time that nothing needs; returns how many."""
        now = now or datetime.now(UTC)
        candidates = [k async for k in self.storage.keys(PREFIX) if expired(k, now, self.keep)]
        if not candidates:
            return 0
        # Read after listing: a generation that starts meanwhile is in this answer.
        needed = await photos.needed()
        gone = 0
        for key in candidates:
            if key not in needed:
                await self.storage.delete(key)
                gone += 1
        self.deleted += gone
        if gone:
            logger.info("deleted {} photo(s) kept longer than {}", gone, self.keep)
        return gone

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - storage or database down: the next pass tries
                logger.exception("photo sweep failed")
            await asyncio.sleep(self.every)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="photo-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
