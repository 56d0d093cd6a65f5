"""What the gateway and the workers say to each other that need not survive a restart, over
PostgreSQL's LISTEN/NOTIFY: a /cancel for a generation running on a worker, and a worker's
progress lines for the gateway to show.

Both are best effort by design. A lost cancel still ends the generation: the worker's next
step is refused by the record (`advance` is a compare-and-set), only its prediction runs on
until then. A lost progress line is replaced by the next. What must not be lost (the video, a
failure to refund) travels as a queue job (`flick.models.generation_jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import asyncpg
from loguru import logger

from flick.models.db import pool

CANCEL = "flick_cancel"
PROGRESS = "flick_progress"
#: pgqueuer's own channel: its trigger notifies every change of the queue table.
QUEUE = "ch_pgqueuer"

OnCancel = Callable[[int], object]
OnProgress = Callable[[int, str, dict[str, Any]], Coroutine[Any, Any, None]]


async def _notify(channel: str, payload: str) -> None:
    try:
        await pool().execute("SELECT pg_notify($1, $2)", channel, payload)
    except Exception as exc:  # noqa: BLE001 - best effort, see the module's docstring
        logger.warning("could not signal {}: {}", channel, exc)


async def cancel_elsewhere(generation_id: int) -> None:
    await _notify(CANCEL, str(generation_id))


async def progress(generation_id: int, key: str, values: dict[str, Any]) -> None:
    await _notify(PROGRESS, json.dumps({"g": generation_id, "k": key, "v": values}))


class Listener:
    """Listens on a connection of its own, reconnecting with a backoff when it drops."""

    def __init__(
        self,
        url: str,
        *,
        on_cancel: OnCancel | None = None,
        on_progress: OnProgress | None = None,
        on_queue_change: Callable[[], None] | None = None,
    ) -> None:
        self._on_queue_change = on_queue_change
        self._url = url
        self._on_cancel = on_cancel
        self._on_progress = on_progress
        self._task: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()
        self.listening = asyncio.Event()

    async def __aenter__(self) -> Listener:
        self._task = asyncio.create_task(self._serve(), name="work-signals")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._handling, return_exceptions=True)

    async def _serve(self) -> None:
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                if self._on_cancel is not None:
                    await conn.add_listener(CANCEL, self._cancel)
                if self._on_progress is not None:
                    await conn.add_listener(PROGRESS, self._progress)
                if self._on_queue_change is not None:
                    await conn.add_listener(QUEUE, self._queue_changed)
                self.listening.set()
                delay = 0.5
                while not lost.is_set() and not conn.is_closed():
                    # A dead server is noticed by a probe, not only by the termination callback.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("work signals: {}; listening again in {:.1f}s", exc, delay)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 5)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _cancel(self, conn: object, pid: int, channel: str, payload: object) -> None:
        assert self._on_cancel is not None
        with contextlib.suppress(ValueError):
            self._on_cancel(int(str(payload)))

    def _queue_changed(self, conn: object, pid: int, channel: str, payload: object) -> None:
        assert self._on_queue_change is not None
        self._on_queue_change()

    def _progress(self, conn: object, pid: int, channel: str, payload: object) -> None:
        assert self._on_progress is not None
        try:
            data = json.loads(str(payload))
            args = (int(data["g"]), str(data["k"]), dict(data.get("v") or {}))
        except (ValueError, KeyError, TypeError):
            return
        task = asyncio.create_task(self._on_progress(*args))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)
