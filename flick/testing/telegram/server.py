"""Telegram's side of the offline Telegram: answers the bot's MTProto requests like Telegram.

Every request is recorded (`exchanges`), checked the way Telegram checks it where that matters
to us (lengths, callback data, Stars invoices, file parts), and answered with the raw objects
Telegram would send, so kurigram's own parsing turns them into its return values.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyrogram import utils

from flick.testing.telegram.affiliate_programs import AffiliatePrograms
from flick.testing.telegram.file_store import FileStore
from flick.testing.telegram.media import image_size
from flick.testing.telegram.media_groups import Albums
from flick.testing.telegram.redelivery import Redelivery
from flick.testing.telegram.star_subscriptions import Subscriptions, check_invoice
from flick.testing.telegram.stars_ledger import StarsLedger
from flick.testing.telegram.wire import (
    Exchange,
    Fault,
    RawUser,
    SentMedia,
    chat_of,
    raw,
    roundtrip,
    rpc_error,
)

MAX_TEXT = 4096
MAX_CAPTION = 1024


@dataclass
class TelegramServer:
    bot: RawUser
    dc_id: int = 2
    users: dict[int, RawUser] = field(default_factory=dict)
    chats: dict[int, Any] = field(default_factory=dict)  # raw chat/channel id → raw object
    exchanges: list[Exchange] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    stars: StarsLedger = field(default_factory=StarsLedger)
    messages: dict[int, Any] = field(default_factory=dict)  # bot's, by id
    media: list[SentMedia] = field(default_factory=list)
    files: FileStore = field(default_factory=FileStore)
    subscriptions: Subscriptions = field(default_factory=Subscriptions)
    redelivery: Redelivery = field(default_factory=Redelivery)  # shared by a bot and its standby
    # Whose session the client is: the bot's, or (False) its owner's, a person's.
    session_is_bot: bool = True

    def __post_init__(self) -> None:
        # One id sequence for the bot's private chats and basic groups, as in Telegram.
        self.message_ids = itertools.count(1)
        self.pts = itertools.count(1)
        self.qts = itertools.count(1)
        self.users[self.bot.id] = self.bot
        self.affiliate = AffiliatePrograms(self.bot)
        self.albums = Albums(self.files)
        self._answers: dict[type[Any], Callable[[Any], Any]] = {
            raw.functions.messages.SendMessage: self._send_message,
            raw.functions.messages.EditMessage: self._edit_message,
            raw.functions.messages.SendMedia: self._send_media,
            raw.functions.messages.UploadMedia: self._upload_media,
            raw.functions.messages.SendMultiMedia: self._send_album,
            raw.functions.messages.GetMessages: self._get_messages,
            raw.functions.messages.SetBotCallbackAnswer: lambda q: True,
            raw.functions.messages.SetBotPrecheckoutResults: self._precheckout_answer,
            raw.functions.bots.SetBotCommands: lambda q: True,
            raw.functions.payments.RefundStarsCharge: self._refund,
            raw.functions.payments.ExportInvoice: self.subscriptions.export,
            raw.functions.payments.BotCancelStarsSubscription: lambda q: (
                self.subscriptions.bot_cancel(q, chat_of(q), self.users)
            ),
            raw.functions.payments.GetStarsTransactions: lambda q: self.stars.transactions(
                q, self.users
            ),
            raw.functions.users.GetUsers: self._get_users,
            raw.functions.users.GetFullUser: lambda q: self.affiliate.full_user(
                q, self.users, self.bot.id if self.session_is_bot else None
            ),
            raw.functions.bots.UpdateStarRefProgram: lambda q: self.affiliate.update(
                q, self.session_is_bot
            ),
            raw.functions.updates.GetState: self._get_state,
            raw.functions.auth.ImportBotAuthorization: lambda q: raw.types.auth.Authorization(
                user=self.bot
            ),
            raw.functions.auth.LogOut: lambda q: raw.types.auth.LoggedOut(),
            raw.functions.updates.GetDifference: lambda q: self.redelivery.difference(q),
            raw.functions.upload.SaveFilePart: self.files.save_part,
            raw.functions.upload.SaveBigFilePart: self.files.save_part,
            raw.functions.upload.GetFile: self.files.get_file,
        }

    async def invoke(self, query: Any) -> Any:
        # Serialized as the session would (a request that cannot be is a bug), but not read
        # back: kurigram's reader guesses small vector items by size, which suits Telegram's
        # answers and garbles requests (a vector of InputMessageID reads as longs).
        query.write()
        # What a client sends when it wants no updates pushed to its connection (kurigram's
        # `no_updates`): Telegram answers the inner request; the exchange records the wish.
        pushed = not isinstance(query, raw.functions.InvokeWithoutUpdates)
        request = query if pushed else query.query
        chat_id = chat_of(request)
        exchange = Exchange(request, chat_id, time.monotonic(), wants_updates=pushed)
        self.exchanges.append(exchange)
        try:
            fault = next((f for f in self.faults if f.matches(request, chat_id)), None)
            if fault is not None:
                self.faults.remove(fault)
                raise fault.make()
            answer = self._answers.get(type(request))
            if answer is None:
                raise NotImplementedError(
                    f"the offline Telegram has no answer for {request.QUALNAME}"
                )
            if chat_id is not None and chat_id in self.blocked and _writes(request):
                raise rpc_error(request, "USER_IS_BLOCKED", 403)
            exchange.result = answer(request)
        except BaseException as exc:
            exchange.error = exc
            raise
        return roundtrip(exchange.result)

    # ---- messages -------------------------------------------------------------------------
    def _peer(self, request: Any, chat_id: int | None) -> Any:
        if chat_id is None:
            raise rpc_error(request, "PEER_ID_INVALID")
        raw_id = utils.get_raw_peer_id(chat_id)
        if chat_id > 0:
            if chat_id not in self.users:
                raise rpc_error(request, "PEER_ID_INVALID")
            return raw.types.PeerUser(user_id=chat_id)
        if raw_id not in self.chats:
            raise rpc_error(request, "PEER_ID_INVALID")
        if utils.get_peer_type(chat_id) == "chat":
            return raw.types.PeerChat(chat_id=raw_id)
        return raw.types.PeerChannel(channel_id=raw_id)

    def _new_message(self, request: Any, text: str, media: Any = None) -> Any:
        chat_id = chat_of(request)
        peer = self._peer(request, chat_id)
        markup = getattr(request, "reply_markup", None)
        _check_markup(request, markup)
        message = raw.types.Message(
            id=next(self.message_ids),
            peer_id=peer,
            from_id=raw.types.PeerUser(user_id=self.bot.id),
            out=True,
            date=int(time.time()),
            message=text,
            media=media,
            reply_markup=markup,
            entities=getattr(request, "entities", None),
        )
        self.messages[message.id] = message
        return message

    def _updates(self, request: Any, message: Any, update_type: type[Any]) -> Any:
        peer = message.peer_id
        if isinstance(peer, raw.types.PeerChannel):
            update_type = {
                raw.types.UpdateNewMessage: raw.types.UpdateNewChannelMessage,
                raw.types.UpdateEditMessage: raw.types.UpdateEditChannelMessage,
            }[update_type]
        updates: list[Any] = [update_type(message=message, pts=next(self.pts), pts_count=1)]
        random_id = getattr(request, "random_id", None)
        if random_id is not None:
            updates.insert(0, raw.types.UpdateMessageID(id=message.id, random_id=random_id))
        if isinstance(peer, raw.types.PeerUser):
            users, chats = [self.bot, self.users[peer.user_id]], []
        else:
            raw_id: int = getattr(peer, "chat_id", None) or peer.channel_id
            users, chats = [self.bot], [self.chats[raw_id]]
        return raw.types.Updates(
            updates=updates, users=users, chats=chats, date=int(time.time()), seq=0
        )

    def _send_message(self, request: Any) -> Any:
        text = request.message
        if not text.strip():
            raise rpc_error(request, "MESSAGE_EMPTY")
        if len(text) > MAX_TEXT:
            raise rpc_error(request, "MESSAGE_TOO_LONG")
        message = self._new_message(request, text)
        if isinstance(message.peer_id, raw.types.PeerUser) and message.reply_markup is None:
            # What Telegram answers for a plain private message: no message, just its id.
            return raw.types.UpdateShortSentMessage(
                id=message.id, pts=next(self.pts), pts_count=1, date=message.date, out=True
            )
        return self._updates(request, message, raw.types.UpdateNewMessage)

    def _edit_message(self, request: Any) -> Any:
        old = self.messages.get(request.id)
        if old is None or utils.get_peer_id(old.peer_id) != chat_of(request):
            raise rpc_error(request, "MESSAGE_ID_INVALID")
        markup = request.reply_markup
        _check_markup(request, markup)
        if old.message == request.message and _wire(old.reply_markup) == _wire(markup):
            raise rpc_error(request, "MESSAGE_NOT_MODIFIED")
        old.message, old.reply_markup, old.edit_date = request.message, markup, int(time.time())
        return self._updates(request, old, raw.types.UpdateEditMessage)

    def _send_media(self, request: Any) -> Any:
        if len(request.message) > MAX_CAPTION:
            raise rpc_error(request, "MEDIA_CAPTION_TOO_LONG")
        media, kind, data, uploaded = self._media(request)
        message = self._new_message(request, request.message, media)
        doc = getattr(media, "document", None)
        thumb = self.files.thumb_of(doc) if doc is not None else None
        self.media.append(
            SentMedia(
                chat_of(request) or 0,
                kind,
                message.id,
                request.message,
                data,
                uploaded,
                request,
                thumb,
            )
        )
        return self._updates(request, message, raw.types.UpdateNewMessage)

    def _upload_media(self, request: Any) -> Any:
        """A file made into a photo or a document before it is sent (an album's items)."""
        media = request.media
        if isinstance(media, raw.types.InputMediaUploadedPhoto):
            size = image_size(self.files.assembled(request, media.file), (0, 0))
            return raw.types.MessageMediaPhoto(
                photo=self.albums.uploaded_photo(request, media, size)
            )
        self._peer(request, chat_of(request))
        return self._media(request)[0]

    def _send_album(self, request: Any) -> Any:
        grouped_id = self.albums.check(request)
        updates: list[Any] = []
        result: Any = None
        for item in request.multi_media:
            media, kind, data, uploaded = self._media(item, request)
            message = self._new_message(request, item.message, media)
            message.grouped_id = grouped_id
            self.media.append(
                SentMedia(
                    chat_of(request) or 0, kind, message.id, item.message, data, uploaded, request
                )
            )
            result = self._updates(item, message, raw.types.UpdateNewMessage)
            updates += result.updates
        result.updates = updates
        return result

    def _media(self, request: Any, outer: Any = None) -> tuple[Any, str, bytes | None, bool]:
        """The MessageMedia of a sent item (`outer`: the album request it belongs to)."""
        media = request.media
        outer = outer or request
        if isinstance(media, raw.types.InputMediaUploadedPhoto):
            data = self.files.assembled(outer, media.file)
            photo = self.albums.uploaded_photo(outer, media, image_size(data, (0, 0)))
            return raw.types.MessageMediaPhoto(photo=photo), "photo", data, True
        if isinstance(media, raw.types.InputMediaPhoto):
            photo = self.albums.photo(outer, media)
            data = self.albums.photo_data[photo.id]
            return raw.types.MessageMediaPhoto(photo=photo), "photo", data, False
        if isinstance(media, raw.types.InputMediaUploadedDocument):
            doc = self.files.document_from_upload(outer, media)
            return _document_media(doc), _doc_kind(doc), self.files.data_of(doc), True
        if isinstance(media, raw.types.InputMediaDocument):
            doc = self.files.documents.get(media.id.id)
            if doc is None or doc.access_hash != media.id.access_hash:
                raise rpc_error(outer, "MEDIA_EMPTY")
            return _document_media(doc), _doc_kind(doc), self.files.data_of(doc), False
        if isinstance(media, raw.types.InputMediaInvoice):
            return _invoice_media(outer, media), "invoice", None, False
        raise NotImplementedError(f"the offline Telegram cannot send {media.QUALNAME}")

    def _get_messages(self, request: Any) -> Any:
        found = [self.messages.get(m.id) or raw.types.MessageEmpty(id=m.id) for m in request.id]
        return raw.types.messages.Messages(
            messages=found,
            topics=[],
            chats=list(self.chats.values()),
            users=list(self.users.values()),
        )

    # ---- bots, payments, users ------------------------------------------------------------
    def _precheckout_answer(self, request: Any) -> bool:
        if not request.success and not request.error:
            raise rpc_error(request, "ERROR_TEXT_EMPTY")
        return True

    def _refund(self, request: Any) -> Any:
        if not request.charge_id:
            raise rpc_error(request, "CHARGE_ID_EMPTY")
        self.stars.refund(request, request.charge_id)
        return raw.types.Updates(updates=[], users=[], chats=[], date=int(time.time()), seq=0)

    def _get_users(self, request: Any) -> list[Any]:
        found = []
        for wanted in request.id:
            if isinstance(wanted, raw.types.InputUserSelf):
                found.append(self.bot)
            elif getattr(wanted, "user_id", None) in self.users:
                found.append(self.users[wanted.user_id])
        return found

    def _get_state(self, request: Any) -> Any:
        return raw.types.updates.State(pts=1, qts=0, date=int(time.time()), seq=0, unread_count=0)


def _writes(request: Any) -> bool:
    return isinstance(
        request,
        raw.functions.messages.SendMessage
        | raw.functions.messages.SendMedia
        | raw.functions.messages.EditMessage,
    )


def _wire(obj: Any) -> bytes | None:
    return obj.write() if obj is not None else None


def _check_markup(request: Any, markup: Any) -> None:
    for row in getattr(markup, "rows", None) or []:
        for button in row.buttons:
            data = getattr(getattr(button, "type", None), "data", None)
            if data is not None and len(data) > 64:
                raise rpc_error(request, "BUTTON_DATA_INVALID")


def _document_media(doc: Any) -> Any:
    video = any(isinstance(a, raw.types.DocumentAttributeVideo) for a in doc.attributes)
    return raw.types.MessageMediaDocument(document=doc, video=video or None)


def _doc_kind(doc: Any) -> str:
    video = any(isinstance(a, raw.types.DocumentAttributeVideo) for a in doc.attributes)
    return "video" if video else "document"


def _invoice_media(request: Any, media: Any) -> Any:
    invoice = media.invoice
    check_invoice(request, media)
    if invoice.subscription_period is not None:
        # A subscription is sold through an invoice link only (payments.exportInvoice).
        raise rpc_error(request, "SUBSCRIPTION_EXPORT_MISSING")
    return raw.types.MessageMediaInvoice(
        title=media.title,
        description=media.description,
        currency=invoice.currency,
        total_amount=sum(p.amount for p in invoice.prices),
        start_param=media.start_param or "",
        test=invoice.test,
    )
