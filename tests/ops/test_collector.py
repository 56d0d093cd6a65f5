"""SurgeFreeze: past capacity, what survives a young collection is frozen, not walked again."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from flick.ops.collector import SurgeFreeze


class Waiting:
    """An object the collector tracks, as a held update or an idle actor is."""

    def __init__(self) -> None:
        self.refs: list[object] = []


@pytest.fixture
def frozen_before() -> Iterator[int]:
    """How many objects were frozen before the test (an in-process `serve` of another test in
    this worker froze its heap); what a test froze is given back to the collector after it."""
    gc.collect()
    yield gc.get_freeze_count()
    gc.unfreeze()


def test_past_capacity_a_young_collections_survivors_are_frozen(frozen_before: int) -> None:
    with SurgeFreeze(lambda: True) as surge:
        waiting = [Waiting() for _ in range(1_000)]
        gc.collect(0)
    frozen = gc.get_freeze_count()
    assert surge.freezes >= 1  # (the allocations above may have started one more)
    assert frozen >= frozen_before + len(waiting)
    assert gc.get_objects(generation=1) == gc.get_objects(generation=2) == []
    del waiting  # frozen objects are still freed by reference counting
    assert gc.get_freeze_count() <= frozen - 1_000


def test_below_capacity_the_collector_runs_as_usual(frozen_before: int) -> None:
    with SurgeFreeze(lambda: False) as surge:
        waiting = [Waiting() for _ in range(1_000)]
        gc.collect(0)
        gc.collect(1)
    assert surge.freezes == 0
    assert gc.get_freeze_count() == frozen_before
    assert len(waiting) == 1_000


def test_a_full_collection_freezes_nothing(frozen_before: int) -> None:
    with SurgeFreeze(lambda: True) as surge:
        gc.collect(2)
    assert (surge.freezes, gc.get_freeze_count()) == (0, frozen_before)


def test_it_stops_watching_once_left(frozen_before: int) -> None:
    asked: list[bool] = []

    def past_capacity() -> bool:
        asked.append(True)
        return True

    with SurgeFreeze(past_capacity):
        waiting = [Waiting() for _ in range(100)]
        gc.collect(0)
    asked_inside = len(asked)
    gc.collect(0)
    assert asked_inside >= 1 and len(asked) == asked_inside
    # What it froze stays frozen: nothing is walked again.
    assert gc.get_freeze_count() >= frozen_before + len(waiting)
