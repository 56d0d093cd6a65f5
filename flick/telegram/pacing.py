"""Sending within Telegram's limits: a global token bucket and per-chat FIFO lanes.

Telegram lets a bot send about 30 messages a second overall and about one a second to one chat;
beyond that it answers FLOOD_WAIT_X. Each chat has a lane: its sends go out one at a time, in
the order they were asked for, and a flood wait parks only that lane (then the same request is
tried again) while other chats keep sending.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from loguru import logger
from pyrogram.errors import FloodWait

T = TypeVar("T")

Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take()` waits for one (FIFO)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Clock = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        # Half a second's worth: a burst of a full second plus the steady rate right after it
        # would put two seconds' worth inside one, which is what Telegram counts.
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 2)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def take(self) -> None:
        # The lock makes waiters queue in arrival order instead of racing for each new token.
        async with self._lock:
            self._refill()
            while self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    resume_at: float = 0.0  # monotonic time before which this chat must not be sent to


class ChatPacer:
    """Per-chat FIFO lanes over one global bucket, with flood waits per chat."""

    MAX_LANES_IDLE = 1024

    def __init__(
        self, bucket: TokenBucket, *, max_flood_retries: int = 5, clock: Clock = time.monotonic
    ) -> None:
        self.bucket = bucket
        self.max_flood_retries = max_flood_retries
        self.flood_waits = 0
        self._clock = clock
        self._lanes: dict[int, _Lane] = {}
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def lanes(self) -> int:
        """Chats with a send under way or a flood wait still running."""
        return len(self._lanes)

    def blocked_for(self, chat_id: int) -> float:
        """Seconds this chat still has to wait because of a flood wait (0 when none)."""
        lane = self._lanes.get(chat_id)
        return max(0.0, lane.resume_at - self._clock()) if lane else 0.0

    async def send(self, chat_id: int, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Run `call` in `chat_id`'s lane: after the chat's earlier sends, within the rate."""
        lane = self._lanes.get(chat_id)
        if lane is None:
            self._prune()
            lane = self._lanes[chat_id] = _Lane()
        lane.users += 1
        self._enter()
        try:
            # asyncio.Lock wakes its waiters in arrival order: that is the per-chat FIFO.
            async with lane.lock:
                floods = 0
                while True:
                    delay = lane.resume_at - self._clock()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await self.bucket.take()
                    try:
                        return await call()
                    except FloodWait as exc:
                        floods += 1
                        seconds = _seconds(exc)
                        self.flood_waits += 1
                        if floods > self.max_flood_retries:
                            raise
                        lane.resume_at = self._clock() + seconds
                        logger.warning(
                            "Telegram asks to wait {}s before the next {} to chat {}",
                            seconds,
                            what,
                            chat_id,
                        )
        finally:
            lane.users -= 1
            self._leave()
            if lane.users == 0 and lane.resume_at <= self._clock():
                self._lanes.pop(chat_id, None)

    async def direct(self, call: Callable[[], Awaitable[T]], what: str, *, budget: float) -> T:
        """Run `call` now, outside any lane; flood waits are slept only within `budget` s.

        For answers to callback and pre-checkout queries: they are not chat messages, and a
        pre-checkout answer is due within 10 seconds of the query.
        """
        started = self._clock()
        self._enter()
        try:
            while True:
                try:
                    return await call()
                except FloodWait as exc:
                    seconds = _seconds(exc)
                    self.flood_waits += 1
                    if self._clock() + seconds - started > budget:
                        raise
                    logger.warning("Telegram asks to wait {}s before a {}", seconds, what)
                    await asyncio.sleep(seconds)
        finally:
            self._leave()

    async def drain(self, within: float) -> bool:
        """Wait until nothing is being sent (True) or `within` seconds pass (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    def _enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def _prune(self) -> None:
        # Lanes normally go when their last sender leaves; one parked by a flood wait stays
        # until the wait is over. Sweep those now and then so they cannot pile up.
        if len(self._lanes) < self.MAX_LANES_IDLE:
            return
        now = self._clock()
        for chat_id in [c for c, lane in self._lanes.items() if lane.users == 0]:
            if self._lanes[chat_id].resume_at <= now:
                del self._lanes[chat_id]


def _seconds(exc: FloodWait) -> float:
    value = exc.value
    return float(value) if isinstance(value, int | float) and value > 0 else 1.0
