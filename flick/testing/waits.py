"""Waiting for a state, not for a while: `await until(lambda: limiter.waiting == 3, "3 queued")`.

A test that sleeps "long enough" for something to happen fails on a busy machine (or waits for
nothing on a fast one). `until` returns as soon as the condition holds; its limit only turns a
hang into a failure.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

#: How often the condition is looked at: often enough not to slow a test down, rarely enough
#: not to busy the event loop that must make it true.
POLL_SECONDS = 0.005


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, limit: float = 30.0
) -> None:
    """Return once `condition()` is true; AssertionError naming `what` after `limit` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"never happened within {limit:g} s: {what}")
        await asyncio.sleep(POLL_SECONDS)
