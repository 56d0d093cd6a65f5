"""A mailbox bounded for outside events and unbounded for the actor's own tasks' reports."""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Iterable

RECENT_IDS = 64

#: The idle timer's callback reads no context variable: it runs in this one shared, empty context
#: rather than in a copy made for every waiting actor (#19: what an idle actor costs the heap).
_TIMER_CONTEXT = contextvars.Context()


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Mailbox:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[tuple[bool, object]] = deque()
        self._external = 0
        self._waiter: asyncio.Future[bool] | None = None  # set while the actor waits for mail
        self.flood_warned = False
        # Update ids already handled: Telegram redelivers after reconnects, and a crashed actor's
        # successor must recognise them too, so they live here rather than in the actor. After a
        # restart they come back from the database (`remember`). A dict keeps them in the order
        # seen, so it is both the set and the queue of the last RECENT_IDS.
        self._seen: dict[str, None] = {}

    def first_time(self, event_id: str) -> bool:
        """True the first time an update id is seen (within the last RECENT_IDS)."""
        if event_id in self._seen:
            return False
        if len(self._seen) >= RECENT_IDS:
            del self._seen[next(iter(self._seen))]
        self._seen[event_id] = None
        return True

    def remember(self, event_ids: Iterable[str]) -> None:
        """Ids handled before this process started (newest first), as the database has them."""
        for event_id in reversed(tuple(event_ids)[:RECENT_IDS]):
            self.first_time(event_id)

    def forget(self, event_id: str) -> None:
        """An update that could not be handled: its redelivery must be handled."""
        self._seen.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def urgent(self) -> bool:
        """Something posted (money, a task's report) is waiting: admission lets it in first."""
        return len(self._items) > self._external

    def offer(self, event: object) -> bool:
        """An outside event; refused when the user has sent more than the capacity."""
        if self._external >= self.capacity:
            return False
        self._external += 1
        self._items.append((True, event))
        self._wake()
        return True

    def post(self, message: object) -> None:
        """A report from the actor's own task: never dropped (it may carry money)."""
        self._items.append((False, message))
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def get(self, idle_seconds: float) -> object | None:
        """The next message, or None after `idle_seconds` of silence."""
        while not self._items:
            # One future and one timer handle per wait, not an Event and asyncio.timeout: past
            # capacity thousands of actors wait at once, and the collector walks what each holds
            # (an Event's deque and coroutine, a Timeout, a context copied for its timer).
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(idle_seconds, _time_out, waiter, context=_TIMER_CONTEXT)
            try:
                woken = await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not woken and not self._items:
                return None
        external, message = self._items.popleft()
        if external:
            self._external -= 1
            if self._external <= self.capacity // 2:
                self.flood_warned = False
        return message
