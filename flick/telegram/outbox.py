"""The engine's Outbox on kurigram: what the bot says, paced within Telegram's limits."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from loguru import logger
from pyrogram import Client, types
from pyrogram.errors import InternalServerError, ServiceUnavailable
from pyrogram.errors.rpc_error import RPCError

from flick.errors import TelegramRefused, TransientError
from flick.events import PhotoRef
from flick.media import VideoMeta, describe_video
from flick.ports import AlbumItem, Keyboard, RecipientGone, RecipientUnreachable, Storage
from flick.telegram import sent
from flick.telegram.albums import AlbumSender
from flick.telegram.files import inline_markup, spool
from flick.telegram.pacing import ChatPacer, TokenBucket

T = TypeVar("T")

#: Errors that mean "this chat will not take messages from us any more".
GONE: Final = frozenset({"USER_IS_BLOCKED", "INPUT_USER_DEACTIVATED", "CHAT_WRITE_FORBIDDEN"})
#: "Telegram's client cannot address this chat": no access hash for it (a lost or new session
#: file, a user who has not written since). Not a block: the user may be reachable again later.
#: kurigram raises it as an RPC answer, or itself (`PeerIdInvalid`) when `resolve_peer` finds the
#: id neither in its peer cache nor through `users.getUsers`.
UNREACHABLE: Final = frozenset({"PEER_ID_INVALID"})
#: A file id Telegram no longer takes (expired reference, another bot's id): upload instead.
_STALE_FILE: Final = frozenset(
    {"FILE_REFERENCE_EXPIRED", "FILE_REFERENCE_INVALID", "FILE_ID_INVALID", "MEDIA_EMPTY"}
)
#: Telegram drops a pre-checkout query that is not answered within 10 seconds.
PRE_CHECKOUT_BUDGET: Final = 8.0
ANSWER_BUDGET: Final = 15.0
REFUND_BUDGET: Final = 60.0


def error_id(exc: BaseException) -> str | None:
    return getattr(exc, "ID", None) if isinstance(exc, RPCError) else None


class TelegramOutbox:
    """flick.ports.Outbox over a kurigram client. Use `async with` (or start()/stop())."""

    def __init__(
        self,
        client: Client,
        storage: Storage | None = None,
        *,
        rate: float = 30.0,
        tmp_dir: Path | None = None,
        drain_seconds: float = 10.0,
    ) -> None:
        self.client = client
        self.storage: Storage | None = storage  # set by the engine once storage runs
        self.tmp_dir = tmp_dir
        self.drain_seconds = drain_seconds
        self.pacer = ChatPacer(TokenBucket(rate))
        self.albums = AlbumSender(client, tmp_dir)
        self.gone = 0
        self.unreachable = 0
        self._open = False

    # ---- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._open = True

    async def stop(self) -> None:
        """Refuse new sends and give the ones under way `drain_seconds` to finish."""
        self._open = False
        if not await self.pacer.drain(self.drain_seconds):
            logger.warning("outbox stopped with {} sends unfinished", self.pacer.in_flight)

    async def __aenter__(self) -> TelegramOutbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- the Outbox port -------------------------------------------------------------------
    async def send_text(self, chat_id: int, text: str, keyboard: Keyboard | None = None) -> int:
        markup = inline_markup(keyboard)
        message_id = await self._in_lane(
            chat_id, "message", lambda: sent.send_text(self.client, chat_id, text, markup)
        )
        if message_id is None:
            raise RuntimeError("Telegram did not return the sent message")
        return message_id

    async def edit_text(
        self, chat_id: int, message_id: int, text: str, keyboard: Keyboard | None = None
    ) -> None:
        markup = inline_markup(keyboard)
        try:
            await self._in_lane(
                chat_id,
                "edit",
                lambda: self.client.edit_message_text(
                    chat_id, message_id, text, reply_markup=markup
                ),
            )
        except TelegramRefused as exc:
            # Same text again (a repeated progress step), or the user deleted the message:
            # either way there is nothing left to change.
            if exc.error_id not in ("MESSAGE_NOT_MODIFIED", "MESSAGE_ID_INVALID"):
                raise
            logger.debug("edit of message {} in chat {}: {}", message_id, chat_id, exc.error_id)

    async def answer_button(
        self, callback_id: str, text: str | None = None, alert: bool = False
    ) -> None:
        self._check_open()
        try:
            await self.pacer.direct(
                lambda: self.client.answer_callback_query(
                    callback_id, text=text or None, show_alert=alert or None
                ),
                "button answer",
                budget=ANSWER_BUDGET,
            )
        except RPCError as exc:
            # Telegram forgets a callback query after a while; a late answer changes nothing,
            # and no other refusal of one is worth failing the press it answers.
            if error_id(exc) != "QUERY_ID_INVALID":
                logger.warning("button answer refused: {}", error_id(exc))
            logger.debug("callback {} not answered: {}", callback_id, error_id(exc))

    async def send_video(
        self,
        chat_id: int,
        storage_key: str,
        caption: str,
        keyboard: Keyboard | None = None,
        file_id: str | None = None,
        *,
        local_path: Path | None = None,
        meta: VideoMeta | None = None,
    ) -> str:
        markup = inline_markup(keyboard)
        if file_id:
            try:
                message = await self._in_lane(
                    chat_id,
                    "video",
                    lambda: self.client.send_video(
                        chat_id, file_id, caption=caption, reply_markup=markup
                    ),
                )
                return _video_file_id(message)
            except (TelegramRefused, ValueError) as exc:
                if isinstance(exc, TelegramRefused) and exc.error_id not in _STALE_FILE:
                    raise
                logger.info("file id of {} not usable ({}); uploading it", storage_key, exc)
        # The caller's local copy is theirs to delete; a spooled one is ours.
        assert self.storage is not None, "the outbox sends stored videos once storage runs"
        path = local_path or await spool(self.storage, storage_key, self.tmp_dir)
        try:
            # Telegram reads size, length and a preview from small files only: always say them.
            meta = meta or await describe_video(path)
            info = meta.info
            message = await self._in_lane(
                chat_id,
                "video",
                lambda: self.client.send_video(
                    chat_id,
                    str(path),
                    caption=caption,
                    reply_markup=markup,
                    width=info.width,
                    height=info.height,
                    duration=info.duration,  # type: ignore[arg-type]  # a double on the wire
                    supports_streaming=True,
                    no_sound=not info.has_audio,
                    thumb=_named(meta.thumb, "thumb.jpg"),
                    file_name=Path(storage_key).name,
                ),
            )
        finally:
            if local_path is None:
                await asyncio.to_thread(path.unlink, missing_ok=True)
        return _video_file_id(message)

    async def send_album(self, chat_id: int, items: Sequence[AlbumItem]) -> None:
        await self.albums.send(chat_id, items, self._in_lane)

    async def send_invoice(
        self,
        chat_id: int,
        *,
        title: str,
        description: str,
        payload: str,
        currency: str,
        amount: int,
        label: str,
    ) -> int:
        # Telegram Stars: currency XTR, an empty provider token and exactly one price.
        prices = [types.LabeledPrice(label=label, amount=amount)]
        message = await self._in_lane(
            chat_id,
            "invoice",
            lambda: self.client.send_invoice(
                chat_id,
                title=title,
                description=description,
                payload=payload,
                currency=currency,
                prices=prices,
                provider_token="",
            ),
        )
        return _message_id(message)

    async def answer_pre_checkout(self, query_id: str, ok: bool, error: str | None = None) -> None:
        self._check_open()
        # Telegram requires a reason with a refusal; the engine normally gives one.
        reason = None if ok else (error or "This purchase cannot be completed right now.")
        try:
            await self.pacer.direct(
                lambda: self.client.answer_pre_checkout_query(
                    query_id, ok=ok, error_message=reason
                ),
                "pre-checkout answer",
                budget=PRE_CHECKOUT_BUDGET,
            )
        except RPCError as exc:
            # Too late (e.g. a query fetched after a restart): Telegram already cancelled the
            # payment, and no money moved.
            if error_id(exc) != "QUERY_ID_INVALID":
                raise _refused_or_transient(exc, "the pre-checkout answer") from exc
            logger.warning("pre-checkout query {} expired before it was answered", query_id)

    async def download(self, photo: PhotoRef) -> AsyncIterator[bytes]:
        self._check_open()
        # Chunks of up to 1 MB straight from Telegram's media DC, never the whole file.
        async for chunk in self.client.stream_media(photo.file_id):
            if chunk:
                yield chunk

    async def refund_star_payment(self, user_id: int, charge_id: str) -> bool:
        self._check_open()
        try:
            await self.pacer.direct(
                lambda: self.client.refund_star_payment(user_id, charge_id),
                "refund",
                budget=REFUND_BUDGET,
            )
        except RPCError as exc:
            if error_id(exc) == "CHARGE_ALREADY_REFUNDED":
                return False
            raise _refused_or_transient(exc, "the refund") from exc
        return True

    async def create_invoice_link(
        self,
        *,
        title: str,
        description: str,
        payload: str,
        currency: str,
        amount: int,
        label: str,
        subscription_period: int | None = None,
    ) -> str:
        """`payments.exportInvoice`: Stars (XTR, no provider, one price); Telegram accepts a
        subscription's period only here, never in a sent invoice."""
        self._check_open()
        prices = [types.LabeledPrice(label=label, amount=amount)]
        try:
            link: str = await self.pacer.direct(
                lambda: self.client.create_invoice_link(
                    title=title,
                    description=description,
                    payload=payload,
                    currency=currency,
                    prices=prices,
                    provider_token="",
                    subscription_period=subscription_period,
                ),
                "invoice link",
                budget=ANSWER_BUDGET,
            )
        except RPCError as exc:
            raise _refused_or_transient(exc, "the invoice link") from exc
        return link

    async def edit_subscription(self, user_id: int, charge_id: str, *, canceled: bool) -> None:
        """`payments.botCancelStarsSubscription` (restore when not `canceled`)."""
        self._check_open()
        try:
            await self.pacer.direct(
                lambda: self.client.edit_user_star_subscription(user_id, charge_id, canceled),
                "subscription change",
                budget=ANSWER_BUDGET,
            )
        except RPCError as exc:
            if error_id(exc) in UNREACHABLE:
                raise RecipientUnreachable(f"user {user_id}: {error_id(exc)}") from exc
            raise _refused_or_transient(exc, "the subscription change") from exc
        except ValueError as exc:  # kurigram's own check of the id, before any request
            if not str(exc).startswith("Peer id invalid"):
                raise
            raise RecipientUnreachable(f"user {user_id}: {exc}") from exc

    # ---- internals -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("the Telegram outbox is not running (use `async with` or start())")

    async def _in_lane(self, chat_id: int, what: str, call: Callable[[], Awaitable[T]]) -> T:
        self._check_open()
        try:
            return await self.pacer.send(chat_id, call, what)
        except RPCError as exc:
            if error_id(exc) in UNREACHABLE:
                self.unreachable += 1
                logger.warning("chat {} cannot be addressed ({})", chat_id, error_id(exc))
                raise RecipientUnreachable(f"chat {chat_id}: {error_id(exc)}") from exc
            if error_id(exc) not in GONE:
                raise _refused_or_transient(exc, what) from exc
            # Expected in a bot's life, not a failure: the engine marks the user and moves on.
            self.gone += 1
            logger.info("chat {} no longer takes messages ({})", chat_id, error_id(exc))
            raise RecipientGone(f"chat {chat_id}: {error_id(exc)}") from exc
        except ValueError as exc:
            # kurigram's check of the id's shape, before any request: no such chat can exist.
            if not str(exc).startswith("Peer id invalid"):
                raise
            self.unreachable += 1
            raise RecipientUnreachable(f"chat {chat_id}: {exc}") from exc


def _refused_or_transient(exc: RPCError, what: str) -> Exception:
    """Telegram's own trouble (5xx) is worth another try; a refusal (4xx: an invoice refused,
    a message too long, a file gone) is not, and the user gets a plain-words reply."""
    if isinstance(exc, InternalServerError | ServiceUnavailable):
        return TransientError(f"Telegram failed {what}: {error_id(exc)}", kind="telegram")
    return TelegramRefused(error_id(exc) or type(exc).__name__, what)


def _named(data: bytes | None, name: str) -> io.BytesIO | None:
    """In-memory bytes as kurigram uploads them (it reads the name of a file object)."""
    if data is None:
        return None
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


def _message_id(message: Any) -> int:
    if message is None or not isinstance(getattr(message, "id", None), int):
        raise RuntimeError("Telegram did not return the sent message")
    message_id: int = message.id
    return message_id


def _video_file_id(message: Any) -> str:
    # Telegram may file a silent clip as an animation or keep it a document: take whichever.
    for kind in ("video", "animation", "document"):
        media = getattr(message, kind, None)
        if media is not None and media.file_id:
            file_id: str = media.file_id
            return file_id
    raise RuntimeError("Telegram did not return the sent video")
