"""One offline Telegram for gateways in other processes (and network namespaces).

Telegram keeps a bot's incoming updates and pushes them to whichever session is connected; a
session that comes back asks for what it missed (`updates.getDifference`, from the pts it saved).
The hub plays that over TCP for `flick.testing.hosted_gateway`: the test builds updates here
(the `UpdateBuilders` of the offline Telegram) and `push`es them. A gateway that connects gets
Telegram's memory first (every update so far, for its getDifference, never pushed; the files
users sent; the messages the bot sent through earlier gateways, which it may edit), then an
end-of-history frame, then each new update live. Updates pushed while no gateway is connected
are only kept: the next one catches up on them, as from Telegram. Those without a pts (a button
press, a pre-checkout query) are in no getDifference: Telegram holds them for the bot until a
session of it connects, so the hub hands them to the next gateway live, after its history. Each
message a gateway sends comes back here (`messages`, and the callbacks the builders make under
them).

A frame is one kind byte, a 4-byte big-endian length and its payload:
  H  an Updates (TL) of history      L  an Updates (TL), live
  F  a file: a JSON line (kind, id, size, reference) and the bytes
  M  a message the bot sent or edited (TL), both ways
  E  end of history: "<pts> <first message id this gateway gives>"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Iterable
from io import BytesIO
from typing import Any

from pyrogram import types, utils
from pyrogram.raw.core import TLObject

from flick.testing.children import GUARD
from flick.testing.telegram.builders import Incoming, UpdateBuilders
from flick.testing.telegram.file_store import FileKey, FileStore
from flick.testing.telegram.offline_telegram import bot_user, bundle
from flick.testing.telegram.server import TelegramServer
from flick.testing.telegram.wire import RawUser, raw

HISTORY, LIVE, FILE, MESSAGE, END = b"H", b"L", b"F", b"M", b"E"
ID_BLOCK = 10_000_000  # each gateway numbers the bot's messages in a block of its own
_HEAD = struct.Struct(">cI")


def frame(kind: bytes, payload: bytes) -> bytes:
    return _HEAD.pack(kind, len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    kind, size = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    return kind, await reader.readexactly(size)


def read_tl(payload: bytes) -> Any:
    return TLObject.read(BytesIO(payload))


def file_frame(files: FileStore, key: FileKey) -> bytes:
    head = {"key": list(key), "reference": files.references[key].hex()}
    return frame(FILE, json.dumps(head).encode() + b"\n" + files.blobs[key])


def add_file(files: FileStore, payload: bytes) -> None:
    """Keep a file an F frame carries, under its id, as the hub's Telegram has it."""
    head, data = payload.split(b"\n", 1)
    fields = json.loads(head)
    kind, media_id, size = fields["key"]
    key: FileKey = (str(kind), int(media_id), str(size))
    files.blobs[key], files.references[key] = data, bytes.fromhex(fields["reference"])


class TelegramHub(UpdateBuilders):
    """The one Telegram of a multi-host test: `await start(address)`, then `push`."""

    def __init__(self) -> None:
        self.bot = bot_user()
        self.server = TelegramServer(self.bot)  # numbering (pts, ids), files, the bot's messages
        self._init_builders()
        self.memory: list[bytes] = []  # H, F and M frames: what a connecting gateway gets
        self.pts = 0
        self.caught_up_from: list[int] = []  # how many updates each gateway got as history
        self._shipped: set[FileKey] = set()
        self._gateways: set[asyncio.StreamWriter] = set()
        self._held: list[bytes] = []  # L frames of pts-less updates that reached no gateway
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Condition()  # a message of the bot's came back

    async def start(self, address: str) -> str:
        """Listen on `address`; the "host:port" gateways are told (TELEGRAM_HUB)."""
        self._server = await asyncio.start_server(self._connected, address, 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"{address}:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._gateways):
            writer.close()  # its reader ends (EOF), and so does the task serving it
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Memory, its end and membership in one step (no await between): every later push
        # reaches this gateway live, every earlier one through its getDifference.
        first_id = ID_BLOCK * (len(self.caught_up_from) + 1)
        writer.write(b"".join(self.memory))
        writer.write(frame(END, f"{self.pts} {first_id}".encode()))
        writer.write(b"".join(self._held))
        self._held = []
        self.caught_up_from.append(sum(f[:1] == HISTORY for f in self.memory))
        self._gateways.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                kind, payload = await read_frame(reader)
                if kind == MESSAGE:  # the bot's: for edits after a takeover, and callbacks
                    message = read_tl(payload)
                    async with self._arrived:
                        self.server.messages[message.id] = message
                        self.memory.append(frame(MESSAGE, payload))
                        self._arrived.notify_all()
        except (asyncio.IncompleteReadError, OSError):
            pass  # the gateway is gone (SIGKILL: its socket closed with it)
        finally:
            self._gateways.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def push(self, *incoming: Incoming | Iterable[Incoming]) -> None:
        """Updates in one `Updates`, kept for getDifference and sent to connected gateways,
        after the files they name."""
        updates = bundle(self.bot, *incoming)
        files = self.server.files
        new = [k for k in files.blobs if k not in self._shipped]
        self._shipped.update(new)
        frames = [file_frame(files, k) for k in new]
        self.memory += frames
        self.memory.append(frame(HISTORY, updates.write()))
        frames.append(frame(LIVE, updates.write()))
        self.pts = max(
            [self.pts, *(u.pts for u in updates.updates if getattr(u, "pts", None) is not None)]
        )
        if not self._gateways:
            unnumbered = [u for u in updates.updates if getattr(u, "pts", None) is None]
            if unnumbered:
                held = raw.types.Updates(
                    updates=unnumbered, users=updates.users, chats=updates.chats,
                    date=updates.date, seq=0,
                )  # fmt: skip
                self._held.append(frame(LIVE, held.write()))
        for writer in list(self._gateways):
            writer.write(b"".join(frames))
            with contextlib.suppress(OSError):  # a gateway just killed: it catches up later
                await writer.drain()

    @property
    def connected(self) -> int:
        """How many gateways the hub serves now (one killed counts until its socket closes)."""
        return len(self._gateways)

    async def exchange(
        self, user: RawUser, *incoming: Incoming | Iterable[Incoming], replies: int = 1
    ) -> list[Any]:
        """Push what `user` does and wait for the bot's next `replies` new messages to them
        (edits are not new); those messages."""
        known = {m.id for m in self.messages_to(user.id)}
        await self.push(*incoming)

        def new() -> list[Any]:
            return [m for m in self.messages_to(user.id) if m.id not in known]

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(new()) >= replies), GUARD)
        return new()

    def messages_to(self, chat_id: int) -> list[Any]:
        """The bot's messages in a chat as they are now (edits applied), in order."""
        mine = [m for m in self.server.messages.values() if utils.get_peer_id(m.peer_id) == chat_id]
        return sorted(mine, key=lambda m: m.id)

    @staticmethod
    def buttons(message: Any) -> list[tuple[str, str]]:
        """The inline buttons under a message: (text, callback data or URL), row after row."""
        if message.reply_markup is None:
            return []
        markup = types.InlineKeyboardMarkup.read(message.reply_markup)
        return [
            (b.text, b.url or _text(b.callback_data)) for row in markup.inline_keyboard for b in row
        ]


def _text(data: str | bytes | None) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data or ""
