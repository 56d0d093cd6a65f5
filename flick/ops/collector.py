"""Python's garbage collector, set for a bot that serves many users at once (#19).

Reference counting frees almost everything Flick allocates; the cyclic collector only has to find
cycles, and the cost of a collection is the number of objects it walks, garbage or not. What it
walks in vain are long-lived objects: what start-up built, and, past capacity, what waits (new
users' held updates, the actors of users between two steps). Three settings keep those out of
its way: `settle_heap` once the bot is up, `GC_THRESHOLDS` for how often, and `SurgeFreeze`
while the engine is full. `PauseClock` times each collection, for the operator's metrics.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from loguru import logger

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


#: Once the engine has had room this long after freezing, the surge is over: what was frozen
#: is collected again in one full collection (`SurgeFreeze.settle`). Twice the actors' idle
#: time (`flick run` passes twice its ACTOR_IDLE_SECONDS): by then the surge's actors have
#: stopped (frozen, they are still freed by reference counting), and the settle walks little
#: more than start-up's heap, 150-200 ms; right after a surge it walked 1.3 million objects
#: for 1.1-1.2 s (BENCHMARKS.md, Round 11).
QUIET_SECONDS = 600.0
#: While the engine stays full, a settle at least this often all the same: about as rare as
#: Python's own full collections at saturation (every 2,000 young ones, 2-3 hours here).
SETTLE_AT_LEAST_EVERY = 7200.0


class SurgeFreeze:
    """While the engine is full, what survives a young collection is frozen (`gc.freeze`)
    instead of being walked again by the middle and full ones; once the surge is over, one full
    collection takes back whatever was frozen and has died since (`settle`).

    Past capacity what survives is what waits: held updates and the actors of users between two
    steps, tens of thousands of objects a second, which the middle collections walked only to
    promote (bench.engine at twice saturation: 3 of them a phase, 223-248 ms each, none freeing
    anything; BENCHMARKS.md Round 11). Frozen objects are still freed by reference counting when
    they die. What freezing holds back is cyclic garbage: what was already waiting in the older
    generations at the freeze, and any frozen object that later dies in a cycle. Flick's own
    long-lived objects are kept out of cycles (a stopped actor is freed at once, also after it
    retried: `tests/engine/test_actor_memory.py`), and the settle bounds the rest to one surge.

    The settle is a full collection of the whole heap (start-up's objects included) and a new
    freeze, as at start-up (`settle_heap`): one pause, taken once the engine has had room for
    `quiet_seconds`, or every `at_least_every` seconds while it stays full.

    `past_capacity` is also asked inside the collector, after a young collection: it must be
    cheap and allocate next to nothing (admission's counters).
    """

    def __init__(
        self,
        past_capacity: Callable[[], bool],
        *,
        quiet_seconds: float = QUIET_SECONDS,
        at_least_every: float = SETTLE_AT_LEAST_EVERY,
        check_every: float = 1.0,
    ) -> None:
        self._past_capacity = past_capacity
        self._quiet = quiet_seconds
        self._at_least_every = at_least_every
        self._check_every = check_every
        self.freezes = 0  # young collections whose survivors were frozen
        self.settles = 0
        self.settle_seconds = 0.0  # how long the last settle stopped the bot
        self._unsettled = False  # frozen since the last settle
        self._full_at = 0.0  # monotonic: when the engine was last seen full
        self._first_freeze_at = 0.0  # of those not settled yet
        self._settling = False
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SurgeFreeze:
        gc.callbacks.append(self._after)
        self._watch = asyncio.create_task(self._watching(), name="surge-freeze")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            gc.callbacks.remove(self._after)
        finally:
            if self._watch is not None:
                self._watch.cancel()
                await asyncio.gather(self._watch, return_exceptions=True)

    def settle(self, why: str = "on request") -> None:
        """Unfreeze, collect everything, freeze what lives: the surge's cyclic garbage goes."""
        # A young collection on another thread (to_thread work) must not freeze in between,
        # nor have its freeze counted as settled.
        self._settling = True
        self._unsettled = False
        started = time.perf_counter()
        try:
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
        finally:
            self._settling = False
        self.settle_seconds = time.perf_counter() - started
        self.settles += 1
        logger.info(
            "{}: one full collection to take back what froze while the engine was full, "
            "{:,} objects of cyclic garbage found, {:.0f} ms",
            why,
            found,
            self.settle_seconds * 1000,
        )

    async def _watching(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            try:
                self._check()
            except Exception:  # noqa: BLE001 - a failed check must not end the watch
                logger.exception("the collector's surge watch failed; it goes on")

    def _check(self) -> None:
        now = time.monotonic()
        if self._past_capacity():
            self._full_at = now
        if not self._unsettled:
            return
        if now - self._full_at >= self._quiet:
            self.settle(f"after a surge (room for {self._quiet:.0f} s)")
        elif now - self._first_freeze_at >= self._at_least_every:
            self.settle(f"still full after {self._at_least_every:.0f} s")

    def _after(self, phase: str, info: dict[str, Any]) -> None:
        # Only after young collections: a full one leaves nothing young to spare the walk, and
        # while this freezes, no middle one runs (the freeze resets the collector's counts).
        if phase != "stop" or info["generation"] == 2 or self._settling:
            return
        if self._past_capacity():
            gc.freeze()
            self.freezes += 1
            now = time.monotonic()
            self._full_at = now
            if not self._unsettled:
                self._unsettled = True
                self._first_freeze_at = now


class PauseClock:
    """How long each collection stopped the bot, by generation (`flick_gc_pause_seconds`).

    The collector calls back at arbitrary allocations, on any thread, possibly while a metric's
    lock is held; so a pause is only noted here, and `drain` hands the notes over from the
    event loop (flick/ops/instruments.py). At most `keep` notes wait for it: if nothing drains
    them, the oldest go.
    """

    def __init__(self, keep: int = 10_000) -> None:
        self._started: float | None = None
        self._pauses: deque[tuple[int, float]] = deque(maxlen=keep)

    def __enter__(self) -> PauseClock:
        if self._tick not in gc.callbacks:  # entered twice, it would count each pause twice
            gc.callbacks.append(self._tick)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tick in gc.callbacks:
            gc.callbacks.remove(self._tick)
        self._started = None

    def drain(self) -> list[tuple[int, float]]:
        """The (generation, seconds) of each collection since the last drain."""
        pauses = []
        while self._pauses:  # popleft is atomic: a pause noted meanwhile waits for the next
            pauses.append(self._pauses.popleft())
        return pauses

    def _tick(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:  # (not when it was entered in the middle of one)
            self._pauses.append((info["generation"], time.perf_counter() - self._started))
            self._started = None


__all__ = [
    "GC_THRESHOLDS",
    "QUIET_SECONDS",
    "SETTLE_AT_LEAST_EVERY",
    "PauseClock",
    "SurgeFreeze",
    "settle_heap",
]
