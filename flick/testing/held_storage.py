"""A storage in front of a real one, whose photo writes a test can hold or make fail.

    store = HeldStorage(storage)          # the test's S3Storage (SeaweedFS)
    gate = store.hold()                   # photo writes wait until gate.set()
    store.failing = True                  # photo writes fail (after the gate), as S3 refusing

Everything else (and every photo write once released, unless failing) goes to the real storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from flick.ports import Storage

PHOTOS = "photos/"


class StorageRefusedError(Exception):
    """What a photo write raises while `failing` (not transient: no retry)."""


class HeldStorage:
    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.gate: asyncio.Event | None = None
        self.failing = False
        self.waiting = 0  # photo writes held at the gate now

    def hold(self) -> asyncio.Event:
        """Photo writes wait until the returned event is set."""
        self.gate = asyncio.Event()
        return self.gate

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        if key.startswith(PHOTOS):
            if self.gate is not None:
                self.waiting += 1
                try:
                    await self.gate.wait()
                finally:
                    self.waiting -= 1
            if self.failing:
                raise StorageRefusedError(f"refused to store {key}")
        await self.inner.put(key, data, content_type)

    async def put_file(self, key: str, path: Path, content_type: str) -> int:
        return await self.inner.put_file(key, path, content_type)

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    def stream(self, key: str) -> AsyncIterator[bytes]:
        return self.inner.stream(key)

    async def size(self, key: str) -> int:
        return await self.inner.size(key)

    def keys(self, prefix: str) -> AsyncIterator[str]:
        return self.inner.keys(prefix)

    async def presign(self, key: str) -> str | None:
        return await self.inner.presign(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)
