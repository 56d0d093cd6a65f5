"""SurgeFreeze: while the engine is full, what survives a young collection is frozen, not
walked again; once the surge is over, one full collection takes back what died frozen."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from flick.ops.collector import PauseClock, SurgeFreeze


class Waiting:
    """An object the collector tracks, as a held update or an idle actor is."""

    def __init__(self) -> None:
        self.refs: list[object] = []


@pytest.fixture
def frozen_before() -> Iterator[int]:
    """How many objects were frozen before the test. Afterwards everything is given back to
    the collector, with the thresholds it had (a settle is a full collection and a freeze of
    the whole test process)."""
    thresholds = gc.get_threshold()
    gc.collect()
    yield gc.get_freeze_count()
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def collectable(obj: object) -> bool:
    """`obj` is in one of the collector's generations, not frozen."""
    return any(o is obj for generation in (0, 1, 2) for o in gc.get_objects(generation))


async def test_while_full_a_young_collections_survivors_are_frozen(frozen_before: int) -> None:
    async with SurgeFreeze(lambda: True) as surge:
        waiting = [Waiting() for _ in range(1_000)]
        gc.collect(0)
        frozen = gc.get_freeze_count()
        assert surge.freezes >= 1  # (the allocations above may have started one more)
        assert frozen >= frozen_before + len(waiting)
        assert not collectable(waiting[0])
        del waiting  # frozen objects are still freed by reference counting
        assert gc.get_freeze_count() <= frozen - 1_000


async def test_with_room_the_collector_runs_as_usual(frozen_before: int) -> None:
    async with SurgeFreeze(lambda: False) as surge:
        waiting = [Waiting() for _ in range(1_000)]
        gc.collect(0)
        gc.collect(1)
    assert surge.freezes == 0
    assert collectable(waiting[0])


async def test_a_full_collection_freezes_nothing(frozen_before: int) -> None:
    full = False
    async with SurgeFreeze(lambda: full) as surge:
        waiting = Waiting()
        full = True  # (only now: no automatic young collection may freeze `waiting` first)
        gc.collect(2)
        full = False
        assert surge.freezes == 0
        assert collectable(waiting)


async def test_once_the_surge_is_over_what_died_frozen_in_a_cycle_is_collected(
    frozen_before: int,
) -> None:
    full = True
    async with SurgeFreeze(lambda: full, quiet_seconds=0.3, check_every=0.05) as surge:
        cycle = Waiting()
        cycle.refs.append(cycle)  # garbage only the collector can free, once it dies
        gone = weakref.ref(cycle)
        gc.collect(0)
        assert surge.freezes >= 1 and not collectable(cycle)
        del cycle
        gc.collect()
        assert gone() is not None  # frozen: out of the collector's reach while the surge lasts
        await asyncio.sleep(0.5)
        assert surge.settles == 0  # still full

        full = False
        for _ in range(100):
            if surge.settles:
                break
            await asyncio.sleep(0.05)
        assert surge.settles == 1
        assert gone() is None
        assert surge.settle_seconds > 0


async def test_a_surge_that_never_ends_is_settled_all_the_same(frozen_before: int) -> None:
    async with SurgeFreeze(
        lambda: True, quiet_seconds=60, at_least_every=0.3, check_every=0.05
    ) as surge:
        gc.collect(0)
        assert surge.freezes >= 1
        for _ in range(100):
            if surge.settles:
                break
            await asyncio.sleep(0.05)
        assert surge.settles >= 1


async def test_it_stops_watching_once_left(frozen_before: int) -> None:
    asked: list[bool] = []

    def full() -> bool:
        asked.append(True)
        return True

    async with SurgeFreeze(full, check_every=3600):
        gc.collect(0)
    asked_inside = len(asked)
    gc.collect(0)
    assert asked_inside >= 1 and len(asked) == asked_inside
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "surge-freeze"]


async def test_the_watch_outlives_a_failed_check(frozen_before: int) -> None:
    calls = 0

    def full() -> bool:
        nonlocal calls
        task = asyncio.current_task()
        if task is not None and task.get_name() == "surge-freeze":
            calls += 1
            if calls == 1:
                raise RuntimeError("a check that failed once")
        return False

    async with SurgeFreeze(full, check_every=0.02) as surge:
        for _ in range(250):
            if calls >= 3:
                break
            await asyncio.sleep(0.02)
        assert calls >= 3  # it went on checking
        assert surge.settles == 0


def test_pauses_are_noted_once_each_and_at_most_keep_wait() -> None:
    clock = PauseClock(keep=3)
    gc.disable()  # only the collections the test asks for
    try:
        with clock, clock:  # entered twice, each pause is still noted once
            gc.collect(0)
            assert [generation for generation, _ in clock.drain()] == [0]
            for _ in range(10):
                gc.collect(1)
        assert [generation for generation, _ in clock.drain()] == [1, 1, 1]  # the newest 3
        gc.collect(0)
        assert clock.drain() == []  # left: not timed
    finally:
        gc.enable()
