"""An offline Telegram: a real kurigram Client whose other end is a fake Telegram in memory.

Tests push raw MTProto updates through `Client.handle_updates`, so kurigram's own parsing makes
the `Message`/`CallbackQuery`/`PreCheckoutQuery` objects, exactly as in production; whatever the
bot sends reaches `TelegramServer`, which answers like Telegram and records each request.

The recorder sits in place of kurigram's sessions, just under `Client.invoke`: uploads and
downloads go to a media-DC session that `Client.invoke` never sees, and kurigram's own `invoke`
(peer caching from every answer) keeps running. See docs/testing.md.

    async with OfflineTelegram() as tg:
        alice = tg.user(1001, "Alice")
        await tg.push(tg.command(alice, "start"))
        assert tg.texts_to(alice.id) == [...]
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pyrogram import Client, errors, types
from pyrogram.storage import SQLiteStorage, Storage

from flick.telegram.client import CLIENT_OPTIONS, session_name
from flick.testing.faults import assert_all_used
from flick.testing.telegram.builders import Incoming, UpdateBuilders
from flick.testing.telegram.server import TelegramServer
from flick.testing.telegram.wire import (
    Exchange,
    Fault,
    OfflineSession,
    RawUser,
    SentMedia,
    raw,
    roundtrip,
)

# Re-exported so tests build requests and errors without importing pyrogram themselves.
__all__ = [
    "BOT_ID",
    "Exchange",
    "Incoming",
    "OfflineTelegram",
    "SentMedia",
    "errors",
    "raw",
    "seed_session",
]

BOT_ID = 7_000_000_001


def bot_user(username: str = "flick_test_bot") -> RawUser:
    """The bot as Telegram describes it to itself."""
    return raw.types.User(
        id=BOT_ID,
        is_self=True,
        bot=True,
        bot_info_version=1,
        access_hash=424242,
        first_name="Flick",
        username=username,
    )


def bundle(bot: RawUser, *incoming: Incoming | Iterable[Incoming]) -> Any:
    """Updates in one raw `Updates`, with every user and chat they name, as Telegram sends them."""
    items: list[Incoming] = []
    for item in incoming:
        items.extend([item] if isinstance(item, Incoming) else item)
    users = {u.id: u for i in items for u in (bot, *i.users)}
    chats = {c.id: c for i in items for c in i.chats}
    return raw.types.Updates(
        updates=[i.update for i in items],
        users=list(users.values()),
        chats=list(chats.values()),
        date=max((getattr(i.message, "date", 0) or 0 for i in items), default=0),
        seq=0,
    )


class _DrainableQueue(asyncio.Queue[Any]):
    """kurigram's update queue, made joinable.

    Its handler workers never call task_done(). A worker that asks for its next packet has
    finished the previous one (parsing and every handler), so that is when it is marked done;
    `join()` then means "every update pushed so far has been through the handlers".
    """

    def __init__(self) -> None:
        super().__init__()
        self._holding: set[asyncio.Task[Any] | None] = set()

    async def get(self) -> Any:
        worker = asyncio.current_task()
        if worker in self._holding:
            self._holding.discard(worker)
            self.task_done()
        item = await super().get()
        if item is None:
            self.task_done()  # the stop signal: nothing to wait for
        else:
            self._holding.add(worker)
        return item


class OfflineTelegram(UpdateBuilders):
    """The bot's client (`.client`) wired to an in-memory Telegram (`.server`)."""

    def __init__(
        self,
        *,
        bot_username: str = "flick_test_bot",
        push_timeout: float = 10.0,
        session: Storage | None = None,
    ):
        self.bot = bot_user(bot_username)
        self.server = TelegramServer(self.bot)
        self.push_timeout = push_timeout
        self._init_builders()
        self.client = Client(
            "flick-offline",
            api_id=1,
            api_hash="0" * 32,
            bot_token=f"{BOT_ID}:offline",
            # Or another session storage than kurigram's in-memory SQLite: the one under test
            # (kurigram takes `storage_engine` only when not `in_memory`).
            in_memory=session is None,
            storage_engine=session,
            **CLIENT_OPTIONS,
        )
        self._queue = _DrainableQueue()
        self._open = False

    # ---- lifecycle -----------------------------------------------------------------------
    async def open(self) -> Self:
        client = self.client
        # kurigram leaves Storage, Dispatcher and handle_updates unannotated: Any, once, here.
        storage: Any = client.storage
        dispatcher: Any = client.dispatcher
        await storage.open()
        await storage.dc_id(self.server.dc_id)
        await storage.api_id(1)
        await storage.test_mode(False)
        await storage.auth_key(bytes(256))
        await storage.user_id(BOT_ID)
        await storage.is_bot(True)
        await storage.date(0)
        bot = roundtrip(self.bot)
        await client.fetch_peers([bot])
        client.me = await types.User._parse(client, bot)
        client.session = OfflineSession(self.server, self.server.dc_id, False)  # type: ignore[assignment]
        client.media_sessions[self.server.dc_id] = OfflineSession(
            self.server, self.server.dc_id, True
        )
        client.is_connected = True
        dispatcher.updates_queue = self._queue
        await dispatcher.start()  # kurigram's own handler workers: handlers really run
        client.is_initialized = True
        self._open = True
        return self

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self.client.stop()
        self.client.executor.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- updates in ------------------------------------------------------------------------
    async def push(self, *incoming: Incoming | Iterable[Incoming]) -> None:
        """Deliver updates in one `Updates` and wait until the bot's handlers have run."""
        updates = bundle(self.bot, *incoming)
        self.server.redelivery.record(updates)
        await self.push_raw(updates)

    async def push_raw(self, updates: Any) -> None:
        """Deliver any raw Updates/UpdateShort object, after a trip through the wire format."""
        # add_handler() registers in a task of its own: let such tasks run first.
        for _ in range(3):
            await asyncio.sleep(0)
        client: Any = self.client  # handle_updates is unannotated
        await client.handle_updates(roundtrip(updates))
        try:
            await asyncio.wait_for(self._queue.join(), self.push_timeout)
        except TimeoutError:
            raise AssertionError(
                f"the bot's handlers were still busy {self.push_timeout:g} s after push()"
            ) from None

    async def catch_up(self) -> None:
        """What a returning bot does at start: kurigram's `recover_gaps`, from the pts its session
        saved, and wait until the handlers have run on what Telegram redelivered."""
        client: Any = self.client
        await client.recover_gaps()
        await asyncio.wait_for(self._queue.join(), self.push_timeout)

    # ---- scripted faults -------------------------------------------------------------------
    def fail_next(
        self,
        request_type: type[Any],
        error: BaseException | type[BaseException],
        chat_id: int | None = None,
    ) -> None:
        """The next `request_type` request (to `chat_id`, if given) fails with `error`, e.g.
        `FloodWait(value=3)`, `UserIsBlocked`, `TimeoutError`. Faults queue up in order."""
        self.server.faults.append(Fault(request_type, error, chat_id))

    def assert_faults_used(self) -> None:
        """Fail if a `fail_next` fault was never triggered; the `tg` fixture calls it at the end."""
        unused = {"fail_next": list(self.server.faults)}
        assert_all_used("OfflineTelegram", unused)

    def block(self, user_id: int) -> None:
        """From now on `user_id` has blocked the bot: sends to them fail USER_IS_BLOCKED."""
        self.server.blocked.add(user_id)

    # ---- what the bot did ------------------------------------------------------------------
    @property
    def exchanges(self) -> list[Exchange]:
        return self.server.exchanges

    @property
    def requests(self) -> list[Any]:
        """Every TL request the bot made, in order (failed attempts included)."""
        return [e.request for e in self.server.exchanges]

    def sent(
        self,
        request_type: type[Any] | tuple[type[Any], ...] | None = None,
        chat_id: int | None = None,
        *,
        ok: bool | None = True,
    ) -> list[Exchange]:
        """Requests of a type (or types), to a chat: successful ones, failed ones (ok=False)
        or all (ok=None)."""
        return [
            e
            for e in self.server.exchanges
            if (request_type is None or isinstance(e.request, request_type))
            and (chat_id is None or e.chat_id == chat_id)
            and (ok is None or e.ok == ok)
        ]

    def texts_to(self, chat_id: int) -> list[str]:
        """Texts of the messages the bot sent to a chat, in order (edits not included)."""
        return [e.request.message for e in self.sent(raw.functions.messages.SendMessage, chat_id)]

    def buttons(self, exchange: Exchange) -> list[list[tuple[str, str]]]:
        """The inline keyboard of a sent message as rows of (text, callback data or URL)."""
        markup = getattr(exchange.request, "reply_markup", None)
        if markup is None:
            return []
        parsed = types.InlineKeyboardMarkup.read(markup)
        return [
            [(b.text, b.url if b.url else _text(b.callback_data)) for b in row]
            for row in parsed.inline_keyboard
        ]

    @property
    def uploaded_files(self) -> dict[int, bytes]:
        """Files the bot uploaded, reassembled from their parts, by upload file id."""
        return {fid: self.server.files.uploaded(fid) for fid in self.server.files.parts}

    @property
    def sent_media(self) -> list[SentMedia]:
        """Videos, documents and invoices the bot sent, in order."""
        return self.server.media

    def sent_videos(self, chat_id: int | None = None) -> list[bytes]:
        """The bytes of each video the bot sent (uploaded or re-sent by file id), in order."""
        return [
            m.data or b""
            for m in self.server.media
            if m.kind == "video" and chat_id in (None, m.chat_id)
        ]

    def bot_commands(self) -> dict[str, list[tuple[str, str]]]:
        """The command menus the bot published, by language code ("" = default)."""
        menus: dict[str, list[tuple[str, str]]] = {}
        for e in self.sent(raw.functions.bots.SetBotCommands):
            menus[e.request.lang_code] = [(c.command, c.description) for c in e.request.commands]
        return menus


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data or ""


async def seed_session(
    data_dir: Path, bot_token: str, *, server_address: str, port: int, dc_id: int = 2
) -> Path:
    """Write the session file `build_client` will use, pointing at `server_address:port`.

    A session that already holds an auth key connects straight to its stored address, so a
    test can aim the production client at, say, 127.0.0.1:1 to see it fail to connect.
    """
    storage: Any = SQLiteStorage(session_name(bot_token), workdir=data_dir)  # unannotated
    await storage.open()
    try:
        await storage.dc_id(dc_id)
        await storage.server_address(server_address)
        await storage.port(port)
        await storage.api_id(1)
        await storage.test_mode(False)
        await storage.auth_key(bytes(range(256)))
        await storage.user_id(int(bot_token.partition(":")[0]))
        await storage.is_bot(True)
        await storage.save()
    finally:
        await storage.close()
    return Path(storage.database)
