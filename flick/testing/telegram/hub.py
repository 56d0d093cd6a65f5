"""One offline Telegram for gateways in other processes (and network namespaces).

Telegram keeps a bot's incoming updates and pushes them to whichever session is connected; a
session that comes back asks for what it missed (`updates.getDifference`, from the pts it saved).
The hub plays that over TCP for `flick.testing.hosted_gateway`: the test builds updates here
(the `UpdateBuilders` of the offline Telegram) and `push`es them. A gateway that connects gets
every update so far as its Telegram's memory (what getDifference answers from, never pushed),
then an end-of-history frame with the current pts, then each new update live. Updates pushed
while no gateway is connected are only kept: the next one catches up on them, as from Telegram.

A frame is one kind byte, a 4-byte big-endian length and a serialized TL `Updates`:
H (history), E (end of history; the payload is the current pts in ASCII) and L (live).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterable
from io import BytesIO
from typing import Any

from pyrogram.raw.core import TLObject

from flick.testing.telegram.builders import Incoming, UpdateBuilders
from flick.testing.telegram.offline_telegram import bot_user, bundle
from flick.testing.telegram.server import TelegramServer

HISTORY, END, LIVE = b"H", b"E", b"L"
_HEAD = struct.Struct(">cI")


def frame(kind: bytes, payload: bytes) -> bytes:
    return _HEAD.pack(kind, len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    kind, size = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    return kind, await reader.readexactly(size)


def read_updates(payload: bytes) -> Any:
    return TLObject.read(BytesIO(payload))


class TelegramHub(UpdateBuilders):
    """The one Telegram of a multi-host test: `await start(address)`, then `push`."""

    def __init__(self) -> None:
        self.bot = bot_user()
        self.server = TelegramServer(self.bot)  # the builders' numbering: pts, message ids
        self._init_builders()
        self.history: list[bytes] = []
        self.pts = 0
        self.caught_up_from: list[int] = []  # how many updates each gateway got as history
        self._gateways: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, address: str) -> str:
        """Listen on `address`; the "host:port" gateways are told (TELEGRAM_HUB)."""
        self._server = await asyncio.start_server(self._connected, address, 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"{address}:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._gateways):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        self._server = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # History, its end and membership in one step (no await between): every later push
        # reaches this gateway live, every earlier one through its getDifference.
        writer.write(b"".join(frame(HISTORY, u) for u in self.history))
        writer.write(frame(END, str(self.pts).encode()))
        self.caught_up_from.append(len(self.history))
        self._gateways.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await reader.read(1 << 12):  # gateways say nothing: wait for their end
                pass
        except OSError:
            pass
        finally:
            self._gateways.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def push(self, *incoming: Incoming | Iterable[Incoming]) -> None:
        """Updates in one `Updates`, kept for getDifference and sent to connected gateways."""
        updates = bundle(self.bot, *incoming)
        payload = updates.write()
        self.history.append(payload)
        self.pts = max(
            [self.pts, *(u.pts for u in updates.updates if getattr(u, "pts", None) is not None)]
        )
        for writer in list(self._gateways):
            writer.write(frame(LIVE, payload))
            with contextlib.suppress(OSError):  # a gateway just killed: it catches up later
                await writer.drain()
