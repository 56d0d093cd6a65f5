"""Retrying transient provider errors: exponential backoff with jitter, inside a time budget."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from loguru import logger

from flick.errors import BudgetExceededError, TransientError

T = TypeVar("T")


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    budget: float,
    what: str,
    base_delay: float = 1.0,
    max_delay: float = 30.0,
) -> T:
    """Run `call` until it succeeds, a final error escapes, or the budget is spent.

    Each attempt gets only the time left in the budget; `Retry-After` is honoured when the
    provider sends it, otherwise the delay doubles with full jitter.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    attempt = 0
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise BudgetExceededError(
                f"{what}: no answer within {budget:.0f}s", user_reason="timeout"
            )
        try:
            async with asyncio.timeout(remaining):
                return await call()
        except TimeoutError:
            raise BudgetExceededError(
                f"{what}: no answer within {budget:.0f}s", user_reason="timeout"
            ) from None
        except TransientError as exc:
            attempt += 1
            delay = exc.retry_after
            if delay is None:
                delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            if loop.time() + delay >= deadline:
                raise BudgetExceededError(
                    f"{what}: still failing after {attempt} attempt(s): {exc}",
                    kind="timeout",
                    user_reason="timeout",
                ) from exc
            logger.info("{} failed ({}), retry {} in {:.1f}s", what, exc.kind, attempt, delay)
            await asyncio.sleep(delay)
