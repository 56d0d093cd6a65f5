"""What every embedded server needs: blocking work off the loop, enter/exit, a sure stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

import psutil
from loguru import logger

T = TypeVar("T")
STOP_SECONDS = 5  # a clean weed stop takes about 1.3 s


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking work in a thread that finishes even if we are cancelled, so a later stop never
    races a half-done start."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


class Service:
    """Shared async-context-manager plumbing: start on enter, stop on exit whatever happened."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def terminate(proc: psutil.Process) -> None:
    """SIGTERM, wait, SIGKILL: nothing is left behind."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.terminate()
        try:
            proc.wait(STOP_SECONDS)
        except psutil.TimeoutExpired:
            # Seen after aborted multipart uploads: S3 and the filer have stopped, and the volume
            # server waits up to 30 s for idle keep-alive connections. Its writes are already with
            # the kernel, so a kill loses nothing.
            logger.info("pid {} still stopping after {} s; killing it", proc.pid, STOP_SECONDS)
            proc.kill()
            proc.wait(10)
