"""Provider wrappers that count the calls in flight and can hold them, for tests that must see a
state ("8 calls are in, 192 wait") rather than hope a sleep was long enough to reach it.

    meter = InFlight()
    gate = asyncio.Event()                          # closed: compose calls stay in flight
    image = CountingImage(LocalImageProvider(), meter, gate)
    ...                                             # a crowd starts generations
    await meter.reached(8)                          # returns the moment 8 are in at once
    gate.set()                                      # let them all go

Both wrappers implement the ports' Protocols themselves (`ImageProvider`, `VideoProvider`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from flick.pipeline.local import LocalVideoProvider
from flick.ports import ComposedImage, ImageProvider, Prediction

__all__ = ["CountingImage", "CountingVideo", "InFlight"]


class InFlight:
    """A shared count of provider work in progress, its highest value, and a wait for a count."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __enter__(self) -> InFlight:
        self.now += 1
        self.peak = max(self.peak, self.now)
        for count, waiter in self._waiters:
            if self.now >= count and not waiter.done():
                waiter.set_result(None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.now -= 1

    async def reached(self, count: int, limit: float = 60.0) -> None:
        """Return once `count` calls are in flight at the same time.

        `limit` only turns a hang into a failure (AssertionError); nothing is timed.
        """
        if self.now >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (count, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(waiter, limit)
        except TimeoutError:
            raise AssertionError(
                f"never {count} calls in flight at once (now {self.now}, peak {self.peak})"
            ) from None
        finally:
            self._waiters.remove(entry)


class CountingImage:
    """An ImageProvider around another one that counts its compose calls and those in flight.
    A compose call waits for `gate` (if given) once it is counted in flight: while the gate is
    clear, calls pile up inside the provider, as with a slow OpenAI."""

    def __init__(
        self, inner: ImageProvider, meter: InFlight, gate: asyncio.Event | None = None
    ) -> None:
        self.inner, self.meter, self.gate = inner, meter, gate
        self.name = inner.name
        self.calls = 0

    async def compose(self, photos: Sequence[bytes], prompt: str, style: str) -> ComposedImage:
        self.calls += 1
        with self.meter:
            if self.gate is not None:
                await self.gate.wait()
            return await self.inner.compose(photos, prompt, style)

    async def check(self) -> None:
        await self.inner.check()


class CountingVideo:
    """A VideoProvider around another one. A prediction is "in flight" from `start` until a poll
    reports it finished (or it is cancelled); `gate`, while clear, keeps every prediction
    "processing", the way a slow Replicate model would. No __aexit__: the app never closes it, so it
    outlives an engine restart like a real provider's predictions do."""

    def __init__(self, inner: LocalVideoProvider, meter: InFlight | None = None) -> None:
        self.inner = inner
        self.meter = meter or InFlight()
        self.name = inner.name
        self.started: list[str] = []
        self.canceled: list[str] = []  # what Flick asked to cancel, whatever state it was in
        self._open: set[str] = set()
        self.gate = asyncio.Event()
        self.gate.set()

    async def start(
        self,
        image: bytes | None,
        content_type: str,
        inputs: Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> str:
        self.meter.__enter__()
        try:
            pid = await self.inner.start(image, content_type, inputs, model=model)
        except BaseException:
            self.meter.__exit__()
            raise
        self.started.append(pid)
        self._open.add(pid)
        return pid

    async def find_accepted(
        self,
        image: bytes | None,
        content_type: str,
        inputs: Mapping[str, Any],
        *,
        since: datetime,
        skip: Collection[str] = (),
        model: str | None = None,
    ) -> str | None:
        return await self.inner.find_accepted(
            image, content_type, inputs, since=since, skip=skip, model=model
        )

    def _end(self, pid: str) -> None:
        if pid in self._open:
            self._open.discard(pid)
            self.meter.__exit__()

    async def poll(self, prediction_id: str) -> Prediction:
        if not self.gate.is_set():
            return Prediction(id=prediction_id, status="processing")
        prediction = await self.inner.poll(prediction_id)
        if prediction.status in ("succeeded", "failed", "canceled"):
            self._end(prediction_id)
        return prediction

    def open_output(self, prediction: Prediction) -> AsyncIterator[bytes]:
        return self.inner.open_output(prediction)

    async def cancel(self, prediction_id: str) -> None:
        self.canceled.append(prediction_id)
        self._end(prediction_id)
        await self.inner.cancel(prediction_id)

    async def check(self) -> None:
        await self.inner.check()
