"""Retrying through transient errors (`flick.retries.retry_transient`): tenacity only after a
failure, so the common case leaves no cyclic garbage for the collector (#19)."""

from __future__ import annotations

import gc

import pytest

from flick.retries import retry_transient

CALLS = 200


async def test_a_call_that_succeeds_leaves_no_cyclic_garbage() -> None:
    async def ok() -> int:
        return 1

    gc.collect()
    gc.disable()  # nothing freed behind the test's back: what it finds is what the calls made
    try:
        results = [await retry_transient(ok, budget=5.0) for _ in range(CALLS)]
        found = gc.collect()
    finally:
        gc.enable()
    assert results == [1] * CALLS
    assert found < CALLS  # tenacity's AsyncRetrying alone left about 36 per call


async def test_transient_failures_are_retried_until_the_call_succeeds() -> None:
    failures = [ConnectionResetError(104, "reset"), TimeoutError()]
    told: list[tuple[str, int]] = []

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    result = await retry_transient(
        flaky, budget=30.0, on_retry=lambda exc, n: told.append((type(exc).__name__, n))
    )
    assert result == "done"
    assert told == [("ConnectionResetError", 1), ("TimeoutError", 2)]


async def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    calls = 0

    async def bug() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        await retry_transient(bug, budget=30.0)
    assert calls == 1


async def test_the_last_transient_error_is_raised_once_the_budget_is_spent() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(111, f"refused {calls}")

    with pytest.raises(ConnectionRefusedError) as raised:
        await retry_transient(down, budget=0.0)
    assert calls == 1 and "refused 1" in str(raised.value)
