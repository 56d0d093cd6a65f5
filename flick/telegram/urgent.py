"""Money first in kurigram's update queue: pre-checkout queries and payments are parsed first.

Past capacity, updates wait in kurigram's dispatcher queue before the engine sees them (parsing
is CPU work; bench.engine at twice Flick's saturation: pre-checkouts answered after 11 s, behind
thousands of queued updates, though the engine's admission lets money straight in). Telegram
drops a pre-checkout query not answered within 10 s. So the queue becomes two: money, then the
rest, each first come first served. A user's order is kept: a payment can only follow the
invoice the bot already answered, and a pre-checkout the purchase step before it.

asyncio.Queue's documented extension points (`_init`, `_put`, `_get`, as PriorityQueue and
LifoQueue use them) carry the change. The dispatcher builds its queue itself, and the offline
test client is already running when the gateway starts, with its worker waiting on that very
queue, so the queue is changed in place (`urgent_first`) rather than replaced.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pyrogram

_raw: Any = pyrogram.raw

_URGENT_ACTIONS = (
    _raw.types.MessageActionPaymentSentMe,
    _raw.types.MessageActionPaymentRefunded,
)


def is_urgent(update: Any) -> bool:
    """A pre-checkout query, a payment or a refund, or a Stars subscription change."""
    money = (_raw.types.UpdateBotPrecheckoutQuery, _raw.types.UpdateBotStarsSubscription)
    if isinstance(update, money):
        return True
    if isinstance(update, _raw.types.UpdateNewMessage):
        action = getattr(update.message, "action", None)
        return isinstance(action, _URGENT_ACTIONS)
    return False


class UrgentFirstQueue(asyncio.Queue[Any]):
    """kurigram's packets `(update, users, chats)` (or None, a worker's stop): urgent first."""

    _queue: deque[Any]
    _urgent: deque[Any]

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self._urgent = deque()

    def qsize(self) -> int:
        return len(self._queue) + len(self._urgent)

    def empty(self) -> bool:
        return not (self._queue or self._urgent)

    def _put(self, item: Any) -> None:
        if item is not None and is_urgent(item[0]):
            self._urgent.append(item)
        else:
            self._queue.append(item)

    def _get(self) -> Any:
        return self._urgent.popleft() if self._urgent else self._queue.popleft()


_MADE: dict[type, type] = {}


def urgent_first(queue: asyncio.Queue[Any]) -> None:
    """Make a running dispatcher's queue urgent-first, keeping what it holds and its own class's
    behaviour (the offline Telegram's queue counts what its handlers are still busy with)."""
    if isinstance(queue, UrgentFirstQueue):
        return
    cls = type(queue)
    made = _MADE.get(cls)
    if made is None:
        made = _MADE[cls] = type(f"UrgentFirst{cls.__name__}", (UrgentFirstQueue, cls), {})
    queue._urgent = deque()  # type: ignore[attr-defined]
    queue.__class__ = made


__all__ = ["UrgentFirstQueue", "is_urgent", "urgent_first"]
