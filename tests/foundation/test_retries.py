"""Retrying through transient errors (`flick.retries.retry_transient`): no cyclic garbage left
for the collector, whether the call succeeded at once or after retries (#19)."""

from __future__ import annotations

import gc
import weakref

import pytest

from flick import retries
from flick.retries import backoff, retry_transient

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


async def test_a_retried_call_was_kept_alive_by_tenacitys_cycles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bug: tenacity's AsyncRetrying, a web of reference cycles, held the last error and
    # through its traceback the caller's frames; an actor that retried once stayed alive (and,
    # frozen past capacity, for good) until the cyclic collector ran.
    monkeypatch.setattr(retries, "backoff", lambda attempt: 0.0)

    class Caller:
        """Stands for an actor: referenced only from the call's frame."""

    async def once(caller: Caller, failures: list[Exception]) -> str:
        async def flaky() -> str:
            assert caller is not None  # the frame (and the traceback's) refers to the caller
            if failures:
                raise failures.pop(0)
            return "done"

        def told(exc: BaseException, attempt: int) -> None:
            told_about.append(f"{caller!r} retries after {exc!r}")  # as an actor's log does

        return await retry_transient(flaky, budget=30.0, on_retry=told)

    told_about: list[str] = []
    gc.collect()
    gc.disable()  # from here only reference counting frees anything
    try:
        caller = Caller()
        gone = weakref.ref(caller)
        errors: list[Exception] = [ConnectionResetError(104, "reset"), TimeoutError()]
        assert await once(caller, errors) == "done"
        assert len(told_about) == 2
        del caller
        assert gone() is None
        found = gc.collect()
    finally:
        gc.enable()
    assert found < 36


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


def test_the_backoff_doubles_up_to_its_cap() -> None:
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (6, 5.0), (100, 5.0)]:
        waits = [backoff(attempt) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits), attempt
        assert max(waits) > ceiling / 2  # full jitter: the whole range is used
