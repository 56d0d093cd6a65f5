"""kurigram's update queue, triaged: money first, users mid-conversation next, new users last and
only when the engine has room for them.

Past capacity, updates wait in kurigram's dispatcher queue before the engine sees them (parsing
is CPU work). Telegram drops a pre-checkout query not answered within 10 s, so money is parsed
first (bench.engine at twice Flick's saturation: pre-checkouts answered after 11 s before this).

New users' updates are held here, unparsed, while admission has no free slot (`Gate`). Before,
each was parsed at once, given an actor that then waited in admission (flick/actors/admission.py),
and walked by the garbage collector while it waited: at three times Flick's saturation, the
replies per second fell from about 400 to 50-240 while updates came in, and rose to 550-680 the
moment they stopped (bench.engine, per second of the phase): the work spent on updates that then
waited took the CPU from the ones being answered. Held here, an update costs a deque entry until
it can be served; it is then parsed and admitted at once. Within the held, first come first served
until the oldest has waited `DEFER_AFTER`, then newest first: in a surge most new users are
answered promptly, the rest once it passes. Sooner than admission's switch (2 s): new users past
capacity keep arriving, unbounded, so in order every one of them would wait longer and longer.
A user's order is kept: one whose actor runs is never held, and a held user's next update only
comes after the bot answered this one.

asyncio.Queue's documented extension points (`_init`, `_put`, `_get`, as PriorityQueue and
LifoQueue use them) carry the change; `empty()` says what a worker may take now, and the engine
wakes a waiting worker when a slot frees (`room`). The dispatcher builds its queue itself, and the
offline test client is already running when the gateway starts, with its worker waiting on that
very queue, so the queue is changed in place (`urgent_first`) rather than replaced.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import pyrogram

_raw: Any = pyrogram.raw

_URGENT_ACTIONS = (
    _raw.types.MessageActionPaymentSentMe,
    _raw.types.MessageActionPaymentRefunded,
)
DEFER_AFTER = 0.5  # seconds: past this, the newest held update goes first (admission tells at it)
clock = time.monotonic  # how long an update has been held (a test moves it)


class Gate(Protocol):
    """The engine, as the queue asks it (the supervisor)."""

    def has_room(self) -> bool: ...  # a new user's update would be admitted at once

    def knows(self, user_id: int) -> bool: ...  # this user's actor runs

    def watch_room(self, wake: Callable[[], None]) -> None: ...  # call `wake` when room frees


def is_urgent(update: Any) -> bool:
    """A pre-checkout query, a payment or a refund, or a Stars subscription change."""
    money = (_raw.types.UpdateBotPrecheckoutQuery, _raw.types.UpdateBotStarsSubscription)
    if isinstance(update, money):
        return True
    if isinstance(update, _raw.types.UpdateNewMessage):
        action = getattr(update.message, "action", None)
        return isinstance(action, _URGENT_ACTIONS)
    return False


def sender(update: Any) -> int | None:
    """Who sent a message or pressed a button, read from the raw update (no parsing)."""
    if isinstance(update, _raw.types.UpdateBotCallbackQuery):
        return int(update.user_id)
    if isinstance(update, _raw.types.UpdateNewMessage):
        peer = getattr(update.message, "from_id", None) or getattr(update.message, "peer_id", None)
        user_id = getattr(peer, "user_id", None)
        return user_id if isinstance(user_id, int) else None
    return None


class UrgentFirstQueue(asyncio.Queue[Any]):
    """kurigram's packets `(update, users, chats)` (or None, a worker's stop): urgent first, then
    the rest; a new user's update (per `gate`) only when the engine has room for it."""

    _queue: deque[Any]
    _urgent: deque[Any]
    _new: deque[tuple[float, Any]]
    gate: Gate | None

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self._urgent = deque()
        self._new = deque()
        self.gate = None

    def qsize(self) -> int:
        return len(self._queue) + len(self._urgent) + len(self._new)

    @property
    def held(self) -> int:
        """New users' updates held until the engine has room."""
        return len(self._new)

    def empty(self) -> bool:
        """Nothing a worker may take now (held updates wait for `room`)."""
        return not (self._urgent or self._queue or (self._new and self._room()))

    def room(self) -> None:
        """The engine has room: a worker waiting while updates are held takes one."""
        if self._new and self._room():
            self._wakeup_next(self._getters)  # type: ignore[attr-defined]

    def _room(self) -> bool:
        return self.gate is None or self.gate.has_room()

    def _put(self, item: Any) -> None:
        if item is None:  # a worker stops: what is held goes first, as it came
            self._queue.extend(packet for _, packet in self._new)
            self._new.clear()
            self.gate = None
            self._queue.append(item)
        elif is_urgent(item[0]):
            self._urgent.append(item)
        elif (
            self.gate is not None
            and (uid := sender(item[0])) is not None
            and (not self.gate.knows(uid))
        ):
            self._new.append((clock(), item))
        else:
            self._queue.append(item)

    def _get(self) -> Any:
        if self._urgent:
            return self._urgent.popleft()
        if self._queue:
            return self._queue.popleft()
        congested = clock() - self._new[0][0] > DEFER_AFTER
        return (self._new.pop() if congested else self._new.popleft())[1]


_MADE: dict[type, type] = {}


def urgent_first(queue: asyncio.Queue[Any], gate: Gate | None = None) -> None:
    """Make a running dispatcher's queue urgent-first, keeping what it holds and its own class's
    behaviour (the offline Telegram's queue counts what its handlers are still busy with); with
    a `gate`, new users' updates wait in it until the engine has room."""
    if not isinstance(queue, UrgentFirstQueue):
        cls = type(queue)
        made = _MADE.get(cls)
        if made is None:
            made = _MADE[cls] = type(f"UrgentFirst{cls.__name__}", (UrgentFirstQueue, cls), {})
        queue._urgent = deque()  # type: ignore[attr-defined]
        queue._new = deque()  # type: ignore[attr-defined]
        queue.gate = None  # type: ignore[attr-defined]
        queue.__class__ = made
    assert isinstance(queue, UrgentFirstQueue)
    if gate is not None:
        queue.gate = gate
        gate.watch_room(queue.room)


__all__ = ["DEFER_AFTER", "Gate", "UrgentFirstQueue", "is_urgent", "sender", "urgent_first"]
