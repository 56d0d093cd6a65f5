"""A mailbox bounded for outside events and unbounded for the actor's own tasks' reports."""

from __future__ import annotations

import asyncio
from collections import deque


class Mailbox:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[tuple[bool, object]] = deque()
        self._external = 0
        self._ready = asyncio.Event()
        self.flood_warned = False

    def __len__(self) -> int:
        return len(self._items)

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
                await asyncio.wait_for(self._ready.wait(), idle_seconds)
            except TimeoutError:
                return None
        external, message = self._items.popleft()
        if external:
            self._external -= 1
            if self._external <= self.capacity // 2:
                self.flood_warned = False
        return message
