"""Retry a call through transient errors: random exponential backoff within a time budget.

Written out here rather than with tenacity (which Flick used until #19), because of what a retry
leaves behind. Every AsyncRetrying is a small web of objects in reference cycles (a thread-local,
a lock and condition, futures, closures: about 36 objects per call wrapped) that also holds the
last error, its traceback, and through it the caller's frames: an actor that retried once was
kept alive by it until the cyclic collector ran. At 300 updates/s tenacity's objects were nearly
all of Flick's cyclic garbage (88,603 objects in 5 s, bench.engine with gc.DEBUG_SAVEALL), and
past capacity Flick freezes what survives a young collection (flick/ops/collector.py), so a
cycle holding an actor would be kept until the surge ends. This loop keeps nothing once it
returns or raises: the error goes with its `except` block. The policy is tenacity's
`wait_random_exponential` with `stop_after_delay` (full jitter: AWS's "Exponential Backoff and
Jitter").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flick.errors import is_transient

T = TypeVar("T")
MULTIPLIER = 0.2  # the first wait is up to this many seconds, doubling, capped at MAX_WAIT
MAX_WAIT = 5.0

#: Told of each failure that will be retried: the error and which attempt failed (from 1).
OnRetry = Callable[[BaseException, int], None]


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (from 1): up to 0.2, 0.4, 0.8 … 5 s."""
    return random.uniform(0, min(MAX_WAIT, MULTIPLIER * 2 ** min(attempt - 1, 16)))


async def retry_transient(
    call: Callable[[], Awaitable[T]], *, budget: float | None, on_retry: OnRetry | None = None
) -> T:
    """`call()`, tried again with random exponential backoff while it fails transiently
    (`is_transient`), until `budget` seconds from the first try (None: never given up).
    Raises the last error once the budget is spent, or at once when it is not transient."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if budget is not None and loop.time() - started >= budget:
                raise
            if on_retry is not None:
                on_retry(exc, attempt)
        await asyncio.sleep(backoff(attempt))
