"""The AI limiter on its own: FIFO permits, places told as they change, cancellation, and no
objects made per refresh while waiting (with 9,000 queued they kept the collector busy)."""

from __future__ import annotations

import asyncio
import gc
from functools import partial

from flick.pipeline.limiter import AILimiter
from flick.testing.waits import until


async def _hold(limiter: AILimiter, name: str, order: list[str], places: dict[str, list[int]],
                release: asyncio.Event) -> None:  # fmt: skip
    async def told(place: int) -> None:
        places.setdefault(name, []).append(place)

    async with limiter.slot(told):
        order.append(name)
        await release.wait()


def _arrived(limiter: AILimiter, order: list[str], count: int) -> bool:
    return len(order) + limiter.waiting == count  # holding a permit, or queued for one


def _last(places: dict[str, list[int]], name: str) -> int | None:
    told = places.get(name)
    return told[-1] if told else None


async def test_permits_go_in_arrival_order_and_places_are_told_as_they_change() -> None:
    limiter = AILimiter(1, refresh_seconds=0.02)
    order: list[str] = []
    places: dict[str, list[int]] = {}
    gates = {name: asyncio.Event() for name in "abcd"}
    tasks = []
    for count, name in enumerate("abcd", start=1):
        tasks.append(asyncio.create_task(_hold(limiter, name, order, places, gates[name])))
        await until(partial(_arrived, limiter, order, count), f"{name} arrived")
    assert order == ["a"] and limiter.waiting == 3

    gates["a"].set()
    await until(lambda: _last(places, "c") == 1 and _last(places, "d") == 2, "c, d moved up")
    gates["b"].set()
    await until(lambda: _last(places, "d") == 1, "d moved up")
    gates["c"].set()
    gates["d"].set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c", "d"]
    assert places == {"b": [1], "c": [2, 1], "d": [3, 2, 1]}
    assert limiter.running == 0 and limiter.waiting == 0 and limiter.peak == 1


async def test_a_cancelled_waiter_leaves_the_queue_and_the_next_one_moves_up() -> None:
    limiter = AILimiter(1, refresh_seconds=0.02)
    order: list[str] = []
    places: dict[str, list[int]] = {}
    gates = {name: asyncio.Event() for name in "abc"}
    tasks = {}
    for count, name in enumerate("abc", start=1):
        tasks[name] = asyncio.create_task(_hold(limiter, name, order, places, gates[name]))
        await until(partial(_arrived, limiter, order, count), f"{name} arrived")
    tasks["b"].cancel()
    await until(lambda: _last(places, "c") == 1, "c moved up")
    assert places["c"] == [2, 1] and order == ["a"]  # at a refresh, before a permit was freed
    gates["a"].set()
    gates["c"].set()
    await asyncio.gather(tasks["a"], tasks["c"])
    assert order == ["a", "c"] and limiter.running == 0 and limiter.waiting == 0


async def test_waiting_makes_no_objects_per_refresh() -> None:
    limiter = AILimiter(1, refresh_seconds=0.01)
    release = asyncio.Event()
    order: list[str] = []
    places: dict[str, list[int]] = {}
    tasks = [
        asyncio.create_task(_hold(limiter, str(i), order, places, release)) for i in range(200)
    ]
    await until(lambda: limiter.waiting == 199, "199 waiting")
    gc.collect()  # everything alive now is old
    # An observation window, not a synchronisation: ~twenty refreshes of 199 waiters whose places
    # do not change (a busy machine makes fewer, and the bound still holds).
    await asyncio.sleep(0.2)
    young = len(gc.get_objects(generation=0)) + len(gc.get_objects(generation=1))
    release.set()
    await asyncio.gather(*tasks)
    # A timeout, its timer and a shielding future per waiter and refresh (3,788 objects here)
    # lived until the next refresh: survivors that every young collection had to walk.
    assert young < 200, f"{young} young objects alive while nobody moved"
    assert len(order) == 200
