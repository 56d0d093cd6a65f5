"""The one global limiter every AI call passes through: a FIFO semaphore that knows its queue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

OnWait = Callable[[int], Awaitable[None]]


class AILimiter:
    def __init__(self, size: int, refresh_seconds: float = 5.0) -> None:
        if size < 1:
            raise ValueError("limiter size must be at least 1")
        self.size = size
        self.running = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._refresh = refresh_seconds

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _grant(self) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)

    def _release(self) -> None:
        # Hand the permit straight to the first live waiter, so nobody can overtake the queue.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1

    @asynccontextmanager
    async def slot(self, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Hold one permit for the body; `on_wait(place)` is told the place in the queue."""
        if self.running < self.size and not self._waiters:
            self._grant()
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            last_place = 0
            try:
                while True:
                    place = self._waiters.index(waiter) + 1 if waiter in self._waiters else 0
                    if on_wait is not None and place and place != last_place:
                        last_place = place
                        await on_wait(place)
                    if waiter.done():
                        break
                    try:
                        await asyncio.wait_for(asyncio.shield(waiter), self._refresh)
                        break
                    except TimeoutError:
                        continue
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # granted while being cancelled: pass it on
                else:
                    waiter.cancel()
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                raise
        try:
            yield
        finally:
            self._release()
