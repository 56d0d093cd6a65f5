"""Python's garbage collector, set for a bot that serves many users at once (#19).

Reference counting frees almost everything Flick allocates; the cyclic collector only has to find
cycles, and the cost of a collection is the number of objects it walks, garbage or not. What it
walks in vain are long-lived objects: what start-up built, and, past capacity, what waits (new
users' held updates, the actors of users between two steps). Three settings keep those out of
its way: `settle_heap` once the bot is up, `GC_THRESHOLDS` for how often, and `SurgeFreeze`
while the engine is full. `PauseClock` times each collection, for the operator's metrics.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

#: Young collections every 50,000 net allocations instead of 700, older ones rarely. Under load
#: most of what an update allocates dies within that many allocations, so it is never promoted
#: to walk again in the old generations: bench.engine, the same machine minutes apart, time in
#: GC 5.1 → 1.5 s at 300/s and 4.9 → 2.7 s at twice saturation, no full collection in either
#: (BENCHMARKS.md, #19). Cyclic garbage still goes, at the rarer full collections.
#: A middle collection every 5 young ones, not 20: past capacity, what waits (held updates,
#: idle actors) survives the young collections, and a middle one walking 20 of them stopped
#: the bot for 0.6-1.1 s, against 0.26-0.34 s every 5 (the same total; Round 9). Full
#: collections stay as rare: every 2,000 young ones.
GC_THRESHOLDS = (50_000, 5, 400)


def settle_heap() -> None:
    """Move what start-up built (modules, SDK clients, styles, catalogs: about 250,000 objects)
    out of the collector's reach, and collect young objects less often (GC_THRESHOLDS). Full
    collections walk only what the bot makes while serving: the longest pause under load went
    from about 290 ms to about 100 ms (BENCHMARKS.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class SurgeFreeze:
    """While the engine is past capacity, what survives a young (or middle) collection is frozen
    (`gc.freeze`) instead of being walked again by the middle and full ones.

    Past capacity what survives is what waits: held updates and the actors of users between two
    steps, tens of thousands of objects a second, which the middle collections walked only to
    promote (bench.engine at twice saturation: 3 of them a phase, up to 230 ms each, none
    freeing anything; BENCHMARKS.md Round 11). Frozen objects are still freed by reference
    counting when they die; what is lost is only the collection of a frozen object that later
    dies in a reference cycle, so Flick's own long-lived objects are kept free of cycles (a
    stopped actor is freed at once: `tests/engine/test_actor_memory.py`), and bench.engine
    prints the cyclic garbage found once everything is unfrozen after the run.

    `past_capacity` is asked inside the collector, after a collection: it must be cheap and
    must not allocate much (the supervisor's admission has a counter for it).
    """

    def __init__(self, past_capacity: Callable[[], bool]) -> None:
        self._past_capacity = past_capacity
        self.freezes = 0  # collections whose survivors were frozen

    def __enter__(self) -> SurgeFreeze:
        gc.callbacks.append(self._after)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        gc.callbacks.remove(self._after)

    def _after(self, phase: str, info: dict[str, Any]) -> None:
        # After a full collection nothing young is left to spare the walk: only 0 and 1.
        if phase == "stop" and info["generation"] < 2 and self._past_capacity():
            gc.freeze()
            self.freezes += 1


class PauseClock:
    """How long each collection stopped the bot, by generation (`flick_gc_pause_seconds`).

    The collector calls back at arbitrary allocations, on any thread, possibly while a metric's
    lock is held; so a pause is only noted here, and `drain` hands the notes over from the
    event loop (flick/ops/instruments.py).
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._pauses: list[tuple[int, float]] = []

    def __enter__(self) -> PauseClock:
        gc.callbacks.append(self._tick)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        gc.callbacks.remove(self._tick)

    def drain(self) -> list[tuple[int, float]]:
        """The (generation, seconds) of each collection since the last drain."""
        # A collection during the swap notes its pause in the list returned: none is lost.
        pauses, self._pauses = self._pauses, []
        return pauses

    def _tick(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pauses.append((info["generation"], time.perf_counter() - self._started))


__all__ = ["GC_THRESHOLDS", "PauseClock", "SurgeFreeze", "settle_heap"]
