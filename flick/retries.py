"""Retry a call through transient errors, with tenacity only once it has failed.

Every AsyncRetrying that tenacity builds is a small web of objects in reference cycles (a
thread-local, a lock and condition, futures, closures): about 36 objects per call wrapped, and
they are freed only by the cyclic garbage collector. An actor wraps every message it handles,
so at 300 updates/s this was nearly all of Flick's cyclic garbage (88,603 objects in 5 s,
bench.engine with gc.DEBUG_SAVEALL), and each young collection it brought on paused every
reply in flight for tens of milliseconds: the everyday p99 (#19). The common case, a call
that succeeds, now runs once with no retry machinery; tenacity takes over after a failure.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

from flick.errors import is_transient

T = TypeVar("T")
MULTIPLIER = 0.2  # the first wait is up to this many seconds, doubling, capped at MAX_WAIT
MAX_WAIT = 5.0

#: Told of each failure that will be retried: the error and which attempt failed (from 1).
OnRetry = Callable[[BaseException, int], None]


async def retry_transient(
    call: Callable[[], Awaitable[T]], *, budget: float | None, on_retry: OnRetry | None = None
) -> T:
    """`call()`, tried again with random exponential backoff while it fails transiently
    (`is_transient`), until `budget` seconds from the first try (None: never given up).
    Raises the last error once the budget is spent, or at once when it is not transient."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await call()
    except Exception as exc:
        if not is_transient(exc):
            raise
        if on_retry is not None:
            on_retry(exc, 1)
        await asyncio.sleep(random.uniform(0, MULTIPLIER))
        if budget is not None and loop.time() - started >= budget:
            raise

    def told(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and exc is not None:
            on_retry(exc, state.attempt_number + 1)

    left = None if budget is None else max(0.0, budget - (loop.time() - started))
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=MULTIPLIER, max=MAX_WAIT),
        stop=stop_never if left is None else stop_after_delay(left),
        before_sleep=told,
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity returns or raises")
