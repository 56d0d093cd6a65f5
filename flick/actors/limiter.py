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
        # (ticket, future) in arrival order; tickets make a waiter's place one subtraction.
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._tickets = 0
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
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1

    def _place(self, ticket: int) -> int:
        """1 for the front of the queue. Waiters leave from the front (a cancelled one, rarely,
        from anywhere): counting from the front's ticket never tells anyone they are closer
        than they are. A scan of the queue per waiter and refresh was O(n²): 0.75 s of CPU per
        refresh with 9,000 waiting."""
        return ticket - self._waiters[0][0] + 1 if self._waiters else 0

    @asynccontextmanager
    async def slot(self, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Hold one permit for the body; `on_wait(place)` is told the place in the queue."""
        if self.running < self.size and not self._waiters:
            self._grant()
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (self._tickets, waiter)
            self._tickets += 1
            self._waiters.append(entry)
            last_place = 0
            try:
                while True:
                    place = 0 if waiter.done() else self._place(entry[0])
                    if on_wait is not None and place and place != last_place:
                        last_place = place
                        await on_wait(place)
                    if waiter.done():
                        break
                    try:
                        # asyncio.timeout, not wait_for: no Task per waiter and refresh.
                        async with asyncio.timeout(self._refresh):
                            await asyncio.shield(waiter)
                        break
                    except TimeoutError:
                        continue
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # granted while being cancelled: pass it on
                else:
                    waiter.cancel()
                    if entry in self._waiters:
                        self._waiters.remove(entry)
                raise
        try:
            yield
        finally:
            self._release()
