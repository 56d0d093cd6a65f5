"""Admission: a bounded number of actors at work at once, money first, the rest told when late.

Why: past its capacity, Flick let every update start work at once. Thousands of actors then
waited inside asyncpg's pool, each with its retry state and coroutine chain alive, and the
garbage collector walked them all (bench.engine at 1,000/s: 6 s of a 13-s phase in GC, pauses of
0.9 s), so throughput fell far below saturation and every answer was late (BENCHMARKS.md, #19).
Here an actor takes a slot before it loads its user or handles a message, and gives it back
after; the excess waits here, cheaply, in priority order:

- MONEY (payments, pre-checkout queries, subscription changes, the actor's own tasks' reports)
  never waits: it takes a slot even when none is free. Telegram drops a pre-checkout query that
  is not answered within 10 s. A waiter whose mailbox receives money is promoted at once.
- ONGOING (a user whose actor is loaded: mid-conversation) before NEW (a user's first update):
  a user being served finishes their step instead of everyone starting and nobody finishing.
- Within a class, first come first served, until the oldest waiter has waited
  `newest_first_after` seconds; then newest first ("adaptive LIFO", Facebook's "Fail at Scale",
  2015): during a surge most updates are still answered promptly, and the ones that wait are
  answered once the surge passes. Not sooner: the users mid-conversation who wait here are
  bounded by those let in, so first come first served keeps every one of them within about that
  long, where newest first makes a few wait for seconds (bench.engine at 2x with the switch at
  0.5 s: consent and style steps answered after 3 s, #19).
- Those who have waited `defer_after` seconds are told so (`on_defer`), as many as a notice
  budget allows (aiolimiter: a notice costs a send, as much CPU as an answer here). Nothing is
  dropped: a waiting update stays in its user's mailbox, not yet journalled as handled, so a
  restart meanwhile gets it again from Telegram.

Hand-written, not a library: asyncio.Semaphore and aiolimiter (a rate limiter) have neither
priorities, nor promotion of a waiter, nor LIFO under congestion, and a waiter here must cost no
timer of its own (one sweep serves them all, as the AI limiter's refresher does).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum

from aiolimiter import AsyncLimiter

#: A user told to wait is not told again for this long (a surge can hold several of their
#: updates, and loading them and handling their first update are two waits).
RETELL_AFTER = 60.0
RETELL_LIMIT = 10_000  # above this many remembered, the old ones are swept out


class Priority(IntEnum):
    MONEY = 0
    ONGOING = 1
    NEW = 2


@dataclass(eq=False, slots=True)
class _Waiter:
    uid: int
    future: asyncio.Future[None]
    since: float
    priority: Priority


@dataclass(slots=True)
class AdmissionStats:
    admitted: int = 0
    waited: int = 0  # admitted after waiting for a slot
    deferred: int = 0  # waited longer than defer_after
    told: int = 0  # of those, told with a notice
    promoted: int = 0
    longest_wait: float = 0.0
    by_priority: dict[Priority, int] = field(default_factory=dict)


class Admission:
    def __init__(
        self,
        slots: int,
        *,
        defer_after: float = 0.5,
        newest_first_after: float = 2.0,
        notices_per_second: float = 10.0,
        on_defer: Callable[[int], None] = lambda uid: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.defer_after = defer_after
        self.newest_first_after = newest_first_after
        self.on_defer = on_defer
        self.notices = AsyncLimiter(max(1.0, notices_per_second), 1.0)
        self.stats = AdmissionStats()
        self._clock = clock
        self._busy = 0
        self._queues: dict[Priority, deque[_Waiter]] = {
            p: deque() for p in (Priority.ONGOING, Priority.NEW)
        }
        self._by_uid: dict[int, _Waiter] = {}
        self._untold: deque[_Waiter] = deque()  # in arrival order, for the sweep
        self._sweeper: asyncio.Task[None] | None = None
        self._told_at: dict[int, float] = {}  # when each user was last told to wait
        self._expected = 0  # actors spawned that have not asked for their first slot yet
        #: Called when a slot is free and nobody waits: updates held before parsing may come.
        self.on_room: Callable[[], None] = lambda: None

    # ---- what the engine reads ----------------------------------------------------------
    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return len(self._by_uid)

    def is_waiting(self, uid: int) -> bool:
        return uid in self._by_uid

    def has_room(self) -> bool:
        """A new user's update would be let in at once (counting actors about to ask)."""
        return self._busy + self._expected < self.slots and not self._by_uid

    def expect(self) -> None:
        """An actor was spawned: it asks for a slot as soon as it runs."""
        self._expected += 1

    # ---- entering and leaving ----------------------------------------------------------------
    @asynccontextmanager
    async def slot(self, uid: int, priority: Priority) -> AsyncIterator[None]:
        await self.enter(uid, priority)
        try:
            yield
        finally:
            self.leave()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    async def enter(self, uid: int, priority: Priority) -> None:
        self.stats.admitted += 1
        self._expected = max(0, self._expected - 1)
        self.stats.by_priority[priority] = self.stats.by_priority.get(priority, 0) + 1
        if priority is Priority.MONEY or (self._busy < self.slots and not self._by_uid):
            self._busy += 1
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(uid, loop.create_future(), self._clock(), priority)
        self._queues[priority].append(waiter)
        self._by_uid[uid] = waiter
        self._untold.append(waiter)
        self._arm_sweep()
        try:
            await waiter.future  # the slot is handed over by leave() (or by promote())
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                self.leave()  # handed a slot in the same instant it was cancelled
            else:
                self._forget(waiter)
            raise
        waited = self._clock() - waiter.since
        self.stats.waited += 1
        self.stats.deferred += waited > self.defer_after
        self.stats.longest_wait = max(self.stats.longest_wait, waited)

    def extend(self) -> None:
        """One more slot, taken at once by an admitted actor for work it leaves running past its
        own slot (a user's row write, flick/actors/row_write.py); `leave()` when that ends.

        Why: the write runs beside the reply, and the actor's slot is free as soon as it
        replied. Past capacity, new users were then let in as fast as they were answered while
        their writes piled up in the database pool (bench.engine at 2x: up to about 1,000 tasks
        waiting for one of 10 connections, every admitted step's statement behind them)."""
        self._busy += 1

    def leave(self) -> None:
        self._busy -= 1
        while self._busy < self.slots:
            waiter = self._next()
            if waiter is None:
                self.on_room()
                return
            self._admit(waiter)

    def promote(self, uid: int) -> None:
        """Money reached this user's mailbox while their actor waits: it goes in now."""
        waiter = self._by_uid.get(uid)
        if waiter is None:
            return
        self.stats.promoted += 1
        self._forget(waiter)
        self._admit(waiter)

    # ---- inside ------------------------------------------------------------------------------
    def _admit(self, waiter: _Waiter) -> None:
        self._by_uid.pop(waiter.uid, None)
        if not waiter.future.done():
            self._busy += 1
            waiter.future.set_result(None)

    def _forget(self, waiter: _Waiter) -> None:
        # Its queue entry stays: `_next` skips it, as its future is done (admitted by promote,
        # or cancelled). Removing it here would be O(n) per waiter at a shutdown.
        if self._by_uid.get(waiter.uid) is waiter:
            del self._by_uid[waiter.uid]

    def _next(self) -> _Waiter | None:
        now = self._clock()
        for priority in (Priority.ONGOING, Priority.NEW):
            queue = self._queues[priority]
            while queue and queue[0].future.done():
                queue.popleft()  # admitted by promote, or cancelled: its age says nothing
            while queue:
                congested = now - queue[0].since > self.newest_first_after
                waiter = queue.pop() if congested else queue.popleft()
                if not waiter.future.done():
                    return waiter
        return None

    def _arm_sweep(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="admission-sweep")

    async def _sweep(self) -> None:
        """Waiters that crossed `defer_after` since the last sweep, newest first, are told
        while the notice limiter has room; the rest are answered later, untold. A notice
        matters when it comes soon after the wait began: one given to a user already waiting
        for many seconds (the oldest, under newest-first) helps nobody and costs a send. One
        task for all waiters, alive only while there are some."""
        while self._by_uid:
            await asyncio.sleep(self.defer_after / 2)
            now = self._clock()
            crossed: list[_Waiter] = []
            while self._untold and now - self._untold[0].since > self.defer_after:
                waiter = self._untold.popleft()
                if not waiter.future.done() and self._by_uid.get(waiter.uid) is waiter:
                    crossed.append(waiter)
            for waiter in reversed(crossed):
                if now - self._told_at.get(waiter.uid, -RETELL_AFTER) < RETELL_AFTER:
                    continue  # told already in this surge: once is enough
                if not self.notices.has_capacity():
                    break
                await self.notices.acquire()  # has capacity: returns without waiting
                self.stats.told += 1
                self._told_at[waiter.uid] = now
                self.on_defer(waiter.uid)
            if len(self._told_at) > RETELL_LIMIT:
                self._told_at = {
                    uid: at for uid, at in self._told_at.items() if now - at < RETELL_AFTER
                }
        # Nobody waits: the waiters still queued were admitted or cancelled. Kept, they (and
        # their futures) would outlive the surge until the next one (#19: an idle heap).
        self._untold.clear()
        for priority, queue in self._queues.items():
            self._queues[priority] = deque(w for w in queue if not w.future.done())


__all__ = ["Admission", "AdmissionStats", "Priority"]
