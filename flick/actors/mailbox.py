"""A mailbox bounded for outside events and unbounded for the actor's own tasks' reports."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

RECENT_IDS = 64


class Mailbox:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[tuple[bool, object]] = deque()
        self._external = 0
        self._ready = asyncio.Event()
        self.flood_warned = False
        # Update ids already handled: Telegram redelivers after reconnects, and a crashed actor's
        # successor must recognise them too, so they live here rather than in the actor. After a
        # restart they come back from the database (`remember`).
        self._seen: deque[str] = deque(maxlen=RECENT_IDS)
        self._seen_set: set[str] = set()

    def first_time(self, event_id: str) -> bool:
        """True the first time an update id is seen (within the last RECENT_IDS)."""
        if event_id in self._seen_set:
            return False
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(event_id)
        self._seen_set.add(event_id)
        return True

    def remember(self, event_ids: Iterable[str]) -> None:
        """Ids handled before this process started (newest first), as the database has them."""
        for event_id in reversed(tuple(event_ids)[:RECENT_IDS]):
            self.first_time(event_id)

    def forget(self, event_id: str) -> None:
        """An update that could not be handled: its redelivery must be handled."""
        if event_id in self._seen_set:
            self._seen_set.discard(event_id)
            self._seen.remove(event_id)

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
        self._ready.set()
        return True

    def post(self, message: object) -> None:
        """A report from the actor's own task: never dropped (it may carry money)."""
        self._items.append((False, message))
        self._ready.set()

    async def get(self, idle_seconds: float) -> object | None:
        """The next message, or None after `idle_seconds` of silence."""
        while not self._items:
            self._ready.clear()
            try:
                # asyncio.timeout, not wait_for: in 3.11 wait_for wraps the wait in a Task of its
                # own, which every idle actor keeps alive (memory) and makes anew at each wake-up.
                async with asyncio.timeout(idle_seconds):
                    await self._ready.wait()
            except TimeoutError:
                return None
        external, message = self._items.popleft()
        if external:
            self._external -= 1
            if self._external <= self.capacity // 2:
                self.flood_warned = False
        return message
