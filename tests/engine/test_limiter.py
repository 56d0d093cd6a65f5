"""The AI limiter on its own: FIFO permits, places told as they change, cancellation, and no
objects made per refresh while waiting (with 9,000 queued they kept the collector busy)."""

from __future__ import annotations

import asyncio
import gc

from flick.pipeline.limiter import AILimiter


async def _hold(limiter: AILimiter, name: str, order: list[str], places: dict[str, list[int]],
                release: asyncio.Event) -> None:  # fmt: skip
    async def told(place: int) -> None:
        places.setdefault(name, []).append(place)

    async with limiter.slot(told):
        order.append(name)
        await release.wait()


async def test_permits_go_in_arrival_order_and_places_are_told_as_they_change() -> None:
    limiter = AILimiter(1, refresh_seconds=0.02)
    order: list[str] = []
    places: dict[str, list[int]] = {}
    gates = {name: asyncio.Event() for name in "abcd"}
    tasks = []
    for name in "abcd":
        tasks.append(asyncio.create_task(_hold(limiter, name, order, places, gates[name])))
        await asyncio.sleep(0.005)
    assert order == ["a"] and limiter.waiting == 3
    for name in "abc":
        gates[name].set()
        await asyncio.sleep(0.1)  # several refreshes
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
    for name in "abc":
        tasks[name] = asyncio.create_task(_hold(limiter, name, order, places, gates[name]))
        await asyncio.sleep(0.005)
    tasks["b"].cancel()
    await asyncio.sleep(0.1)
    assert places["c"] == [2, 1]  # moved up at the next refresh, before any permit was freed
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
    await asyncio.sleep(0.05)
    gc.collect()  # everything alive now is old
    await asyncio.sleep(0.2)  # twenty refreshes of 199 waiters whose places do not change
    young = len(gc.get_objects(generation=0)) + len(gc.get_objects(generation=1))
    release.set()
    await asyncio.gather(*tasks)
    # A timeout, its timer and a shielding future per waiter and refresh (3,788 objects here)
    # lived until the next refresh: survivors that every young collection had to walk.
    assert young < 200, f"{young} young objects alive while nobody moved"
    assert len(order) == 200
