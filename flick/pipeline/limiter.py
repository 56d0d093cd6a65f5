"""The one global limiter every AI call passes through: a FIFO semaphore that knows its queue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

OnWait = Callable[[int], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _Waiter:
    ticket: int
    on_wait: OnWait | None
    granted: bool = False
    told: int = 0  # the place last told
    wake: asyncio.Future[None] | None = None  # set while it sleeps


class AILimiter:
    """Waiters sleep on one future each, woken by a grant or, from the one refresher timer of
    the whole queue, when their place has changed. A waiter allocates nothing while it waits:
    a timeout per waiter and refresh left, with 9,000 queued, tens of thousands of objects
    living a few seconds each, and the garbage collector's pauses set `/balance`'s p99."""

    def __init__(self, size: int, refresh_seconds: float = 5.0) -> None:
        if size < 1:
            raise ValueError("limiter size must be at least 1")
        self.size = size
        self.running = 0
        self.peak = 0
        # In arrival order; tickets make a waiter's place one subtraction.
        self._waiters: deque[_Waiter] = deque()
        self._tickets = 0
        self._refresh = refresh_seconds
        self._refresher: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _grant(self) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)

    def _release(self) -> None:
        # Hand the permit straight to the first waiter, so nobody can overtake the queue.
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True
            self._wake(waiter)
            return
        self.running -= 1

    @staticmethod
    def _wake(waiter: _Waiter) -> None:
        if waiter.wake is not None and not waiter.wake.done():
            waiter.wake.set_result(None)

    def _place(self, ticket: int) -> int:
        """1 for the front of the queue. Waiters leave from the front (a cancelled one, rarely,
        from anywhere): counting from the front's ticket never tells anyone they are closer
        than they are. A scan of the queue per waiter and refresh was O(n²)."""
        return ticket - self._waiters[0].ticket + 1 if self._waiters else 0

    def _tell_places(self) -> None:
        self._refresher = None
        if not self._waiters:
            return
        front = self._waiters[0].ticket
        for waiter in self._waiters:
            if waiter.on_wait is not None and waiter.ticket - front + 1 != waiter.told:
                self._wake(waiter)
        self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        if self._refresher is None and self._waiters:
            loop = asyncio.get_running_loop()
            self._refresher = loop.call_later(self._refresh, self._tell_places)

    @asynccontextmanager
    async def slot(self, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Hold one permit for the body; `on_wait(place)` is told the place in the queue."""
        if self.running < self.size and not self._waiters:
            self._grant()
        else:
            waiter = _Waiter(self._tickets, on_wait)
            self._tickets += 1
            self._waiters.append(waiter)
            self._schedule_refresh()
            loop = asyncio.get_running_loop()
            try:
                while not waiter.granted:
                    place = self._place(waiter.ticket)
                    if on_wait is not None and place != waiter.told:
                        waiter.told = place
                        await on_wait(place)
                        if waiter.granted:
                            break
                    waiter.wake = loop.create_future()
                    try:
                        await waiter.wake
                    finally:
                        waiter.wake = None
            except BaseException:
                if waiter.granted:
                    self._release()  # granted while being cancelled: pass it on
                else:
                    self._waiters.remove(waiter)
                raise
        try:
            yield
        finally:
            self._release()
