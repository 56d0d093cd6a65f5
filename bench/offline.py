"""The offline Telegram, driven the way Telegram drives a bot: updates arrive on their own clock.

`OfflineTelegram.push()` waits until the bot's handlers have run, which is right for tests and
wrong for a load generator (Telegram does not wait for the bot). `inject()` hands the same raw
updates, after the same wire round trip, to `Client.handle_updates` and returns at once, as
kurigram's network reader does. `ReplyTap` sits in front of the offline server and reports each
message the bot sends, with the time it reached "Telegram".
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from flick.testing.telegram import Incoming, OfflineTelegram, raw
from flick.testing.telegram.file_store import FileStore
from flick.testing.telegram.wire import chat_of, roundtrip, rpc_error

OnReply = Callable[[int, int | None, float], None]


async def inject(tg: OfflineTelegram, *incoming: Incoming) -> None:
    """Deliver updates in one `Updates` container without waiting for the handlers."""
    users = {tg.bot.id: tg.bot}
    chats: dict[int, Any] = {}
    for item in incoming:
        users.update((u.id, u) for u in item.users)
        chats.update((c.id, c) for c in item.chats)
    updates = raw.types.Updates(
        updates=[i.update for i in incoming],
        users=list(users.values()),
        chats=list(chats.values()),
        date=int(time.time()),
        seq=0,
    )
    client: Any = tg.client  # handle_updates is unannotated
    await client.handle_updates(roundtrip(updates))


def sent_message_id(result: Any) -> int | None:
    """The id of the message a SendMessage/SendMedia answer describes."""
    if isinstance(result, raw.types.UpdateShortSentMessage):
        return int(result.id)
    for update in getattr(result, "updates", ()):
        message = getattr(update, "message", None)
        if isinstance(update, raw.types.UpdateNewMessage) and message is not None:
            return int(message.id)
    return None


class ReplyTap:
    """Wraps the offline server's `invoke`: calls `on_reply(chat_id, message_id, t)` for each
    message sent to a chat (t: `clock()`), and `on_media` for each video/invoice.

    The server keeps every exchange for tests to read; a benchmark sends hundreds of thousands,
    so the tap forgets them as they go (`keep=False`), or memory would measure the recorder.
    """

    def __init__(
        self,
        tg: OfflineTelegram,
        *,
        keep: bool = False,
        last_only: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.server = tg.server
        self.clock = clock
        self.keep = keep
        # last_only: the server forgets a chat's older messages (no edits or taps on them come).
        self.last_only = last_only
        self._last: dict[int, int] = {}
        self.on_reply: OnReply = lambda chat, mid, t: None
        self.on_media: OnReply = lambda chat, mid, t: None
        self.on_edit: OnReply = lambda chat, mid, t: None
        # A message whose text is one of these is a notice ("lots of people right now"), not
        # the answer to a step: the user goes on waiting for the answer.
        self.notice_texts: frozenset[str] = frozenset()
        self.on_notice: Callable[[int, float], None] = lambda chat, t: None
        # An answer to a pre-checkout query: (query id, ok, t).
        self.on_pre_checkout: Callable[[int, bool, float], None] = lambda qid, ok, t: None
        self.requests = 0
        self.errors = 0
        self._inner = tg.server.invoke
        tg.server.invoke = self.invoke  # type: ignore[method-assign]

    async def invoke(self, query: Any) -> Any:
        self.requests += 1
        try:
            result = await self._inner(query)
        except BaseException:
            self.errors += 1
            raise
        finally:
            if not self.keep:
                self.server.exchanges.clear()
        now = self.clock()
        if isinstance(query, raw.functions.messages.SendMessage):
            chat = chat_of(query)
            if chat is not None and query.message in self.notice_texts:
                self.on_notice(chat, now)
            elif chat is not None:
                message_id = sent_message_id(result)
                self._forget_older(chat, message_id)
                self.on_reply(chat, message_id, now)
        elif isinstance(query, raw.functions.messages.SendMedia):
            chat = chat_of(query)
            if chat is not None:
                message_id = sent_message_id(result)
                self._forget_older(chat, message_id)
                self.on_media(chat, message_id, now)
        elif isinstance(query, raw.functions.messages.SetBotPrecheckoutResults):
            self.on_pre_checkout(int(query.query_id), bool(query.success), now)
        elif isinstance(query, raw.functions.messages.EditMessage):
            chat = chat_of(query)
            if chat is not None:
                self.on_edit(chat, query.id, now)
        return result

    def _forget_older(self, chat: int, message_id: int | None) -> None:
        if not self.last_only or message_id is None:
            return
        older = self._last.get(chat)
        self._last[chat] = message_id
        if older is not None:
            self.server.messages.pop(older, None)


class LeanFileStore(FileStore):
    """The offline Telegram's file store, minus keeping uploads: each part is checked and hashed
    as it arrives and then dropped, so a 50 MB video costs the benchmark's process nothing."""

    def __init__(self, dc_id: int = 2) -> None:
        super().__init__(dc_id)
        self.part_sizes: dict[int, dict[int, int]] = {}
        self.uploaded_bytes = 0
        self.big_parts = 0

    def save_part(self, request: Any) -> bool:
        if not request.bytes:
            raise rpc_error(request, "FILE_PART_EMPTY")
        if len(request.bytes) > 512 * 1024:
            raise rpc_error(request, "FILE_PART_TOO_BIG")
        if isinstance(request, raw.functions.upload.SaveBigFilePart):
            self.big_parts += 1
        self.part_sizes.setdefault(request.file_id, {})[request.file_part] = len(request.bytes)
        self.uploaded_bytes += len(request.bytes)
        return True

    def document_from_upload(self, request: Any, media: Any) -> Any:
        upload = media.file
        parts = self.part_sizes.pop(upload.id, {})
        missing = next((i for i in range(upload.parts) if i not in parts), None)
        if missing is not None:
            raise rpc_error(request, f"FILE_PART_{missing}_MISSING")
        # What Telegram keeps is not the benchmark's business: a one-byte stand-in document.
        digest = hashlib.sha1(str(sum(parts.values())).encode()).digest()
        return self.add_document(digest[:1], media.mime_type, list(media.attributes))


def use_lean_files(tg: OfflineTelegram) -> LeanFileStore:
    """Swap the offline server's file store for a LeanFileStore (before anything is sent)."""
    lean = LeanFileStore(tg.server.dc_id)
    server: Any = tg.server
    server.files = lean
    # The server bound its answers to the old store's methods when it was made.
    server._answers[raw.functions.upload.SaveFilePart] = lean.save_part
    server._answers[raw.functions.upload.SaveBigFilePart] = lean.save_part
    server._answers[raw.functions.upload.GetFile] = lean.get_file
    return lean


def use_lean_lookups(tg: OfflineTelegram) -> None:
    """Answer `messages.GetMessages` with only the peers of the messages asked for, as Telegram
    does. The offline server sends every user it knows with each answer, which is O(users) per
    callback query (kurigram fetches a button's message it has not cached): with thousands of
    synthetic users that, not the bot, would be the benchmark's bottleneck."""
    server: Any = tg.server

    def get_messages(request: Any) -> Any:
        found = [server.messages.get(m.id) or raw.types.MessageEmpty(id=m.id) for m in request.id]
        wanted = {server.bot.id}
        for message in found:
            peer = getattr(message, "peer_id", None)
            if isinstance(peer, raw.types.PeerUser):
                wanted.add(peer.user_id)
        users = [server.users[u] for u in wanted if u in server.users]
        return raw.types.messages.Messages(messages=found, topics=[], chats=[], users=users)

    server._answers[raw.functions.messages.GetMessages] = get_messages
