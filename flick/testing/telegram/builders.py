"""Raw MTProto updates as Telegram sends them to a bot: one builder per kind of input.

Each builder returns an `Incoming` (the update plus the users and chats Telegram sends with it,
so kurigram can resolve every peer); `OfflineTelegram.push()` delivers one or more of them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyrogram import utils

from flick.testing.telegram.media import image_size, new_chat, unsupported_media
from flick.testing.telegram.server import TelegramServer
from flick.testing.telegram.star_subscriptions import PERIOD
from flick.testing.telegram.wire import RawUser, raw


@dataclass(frozen=True)
class Incoming:
    update: Any
    users: tuple[Any, ...] = ()
    chats: tuple[Any, ...] = ()

    @property
    def message(self) -> Any:
        """The raw message inside (for message updates)."""
        return getattr(self.update, "message", None)


class UpdateBuilders:
    server: TelegramServer
    bot: RawUser

    def _init_builders(self) -> None:
        self._ids = itertools.count(10_000)

    # ---- people and chats -----------------------------------------------------------------
    def user(
        self,
        user_id: int,
        first_name: str = "Alice",
        *,
        username: str | None = None,
        language_code: str | None = "en",
        bot: bool = False,
        last_name: str | None = None,
    ) -> RawUser:
        """A Telegram user (registered with the offline Telegram, so the bot can write to it)."""
        user = raw.types.User(
            id=user_id,
            access_hash=user_id * 31337 % (1 << 62),
            first_name=first_name,
            last_name=last_name,
            username=username,
            lang_code=language_code,
            bot=bot or None,
            # Telegram always sets this for bots; kurigram's peer handling expects it.
            bot_info_version=1 if bot else None,
        )
        self.server.users[user_id] = user
        return user

    def group(
        self, chat_id: int | None = None, *, kind: str = "group", title: str = "Friends"
    ) -> Any:
        """A basic group ("group"), a supergroup or a channel, by kurigram's chat id."""
        raw_id = utils.get_raw_peer_id(chat_id) if chat_id else next(self._ids)
        assert raw_id is not None
        chat = new_chat(raw_id, kind, title)
        self.server.chats[raw_id] = chat
        return chat

    # ---- private messages -----------------------------------------------------------------
    def message(self, user: RawUser, text: str = "", **fields: Any) -> Incoming:
        """A new private message from `user`; `fields` go to raw.types.Message (media, …)."""
        peer = raw.types.PeerUser(user_id=user.id)
        fields.setdefault("from_id", peer)
        message = raw.types.Message(
            id=next(self.server.message_ids),
            peer_id=peer,
            date=int(time.time()),
            message=text,
            **fields,
        )
        return self._new(message, users=(user,))

    def text(self, user: RawUser, text: str) -> Incoming:
        return self.message(user, text)

    def command(
        self, user: RawUser, name: str, args: str = "", *, mention: bool = False
    ) -> Incoming:
        """ "/name args", as a client sends it (with its bot_command entity)."""
        head = f"/{name}" + (f"@{self.bot.username}" if mention else "")
        entity = raw.types.MessageEntityBotCommand(offset=0, length=len(head))
        return self.message(user, f"{head} {args}".rstrip(), entities=[entity])

    def photo(
        self,
        user: RawUser,
        data: bytes,
        *,
        size: tuple[int, int] | None = None,
        caption: str = "",
        grouped_id: int | None = None,
        media_id: int | None = None,
    ) -> Incoming:
        """A photo whose bytes the bot can then download (`upload.getFile`); `media_id`: the
        photo's Telegram id, when a test needs it fixed."""
        width, height = size or image_size(data)
        photo = self.server.files.add_photo(data, width, height, media_id=media_id)
        media = raw.types.MessageMediaPhoto(photo=photo)
        return self.message(user, caption, media=media, grouped_id=grouped_id)

    def album(self, user: RawUser, photos: Sequence[bytes]) -> list[Incoming]:
        """Several photos sent together: one grouped_id, one message each."""
        grouped_id = next(self._ids) * 1_000_003
        return [self.photo(user, data, grouped_id=grouped_id) for data in photos]

    def document(
        self,
        user: RawUser,
        data: bytes,
        *,
        mime_type: str = "image/jpeg",
        file_name: str = "photo.jpg",
    ) -> Incoming:
        """A file ("send as file"), e.g. an uncompressed photo."""
        attributes: list[Any] = [raw.types.DocumentAttributeFilename(file_name=file_name)]
        if mime_type.startswith("image/"):
            width, height = image_size(data)
            attributes.append(raw.types.DocumentAttributeImageSize(w=width, h=height))
        doc = self.server.files.add_document(data, mime_type, attributes)
        return self.message(user, "", media=raw.types.MessageMediaDocument(document=doc))

    def media(self, user: RawUser, kind: str) -> Incoming:
        """Something the bot cannot use: one of MEDIA_KINDS."""
        return self.message(user, "", media=unsupported_media(self.server.files, kind))

    def sticker(self, user: RawUser) -> Incoming:
        return self.media(user, "sticker")

    def voice(self, user: RawUser) -> Incoming:
        return self.media(user, "voice")

    def location(self, user: RawUser) -> Incoming:
        return self.media(user, "location")

    def contact(self, user: RawUser) -> Incoming:
        return self.media(user, "contact")

    def anonymous(self, user: RawUser, text: str = "hello") -> Incoming:
        """A private-chat message with no user behind it (sent "as" a channel)."""
        channel = self.group(kind="channel", title="Somebody's channel")
        incoming = self.message(user, text, from_id=raw.types.PeerChannel(channel_id=channel.id))
        return replace(incoming, chats=(channel,))

    def edited(self, incoming: Incoming, text: str) -> Incoming:
        """The same message, edited: Telegram sends it again as updateEditMessage."""
        message = incoming.message
        edited = raw.types.Message(
            **{slot: getattr(message, slot) for slot in message.__slots__},
        )
        edited.message, edited.edit_date = text, int(time.time())
        cls = raw.types.UpdateEditMessage
        if isinstance(incoming.update, raw.types.UpdateNewChannelMessage):
            cls = raw.types.UpdateEditChannelMessage
        update = cls(message=edited, pts=next(self.server.pts), pts_count=1)
        return replace(incoming, update=update)

    # ---- groups and channels --------------------------------------------------------------
    def group_text(
        self, user: RawUser | None, text: str, *, chat: Any = None, kind: str = "group"
    ) -> Incoming:
        """A message in a group/supergroup (from `user`) or a channel post (user None)."""
        chat = chat or self.group(kind=kind)
        if isinstance(chat, raw.types.Chat):
            peer: Any = raw.types.PeerChat(chat_id=chat.id)
        else:
            peer = raw.types.PeerChannel(channel_id=chat.id)
        message = raw.types.Message(
            id=next(self.server.message_ids),
            peer_id=peer,
            date=int(time.time()),
            message=text,
            from_id=raw.types.PeerUser(user_id=user.id) if user else None,
            post=(user is None) or None,
        )
        users = (user,) if user else ()
        return self._new(message, users=users, chats=(chat,))

    # ---- bot interactions -----------------------------------------------------------------
    def callback(
        self, user: RawUser, data: bytes | str, *, message_id: int | None = None
    ) -> Incoming:
        """A press on an inline button under one of the bot's messages (default: its last)."""
        if message_id is None:
            mine = [
                m.id
                for m in self.server.messages.values()
                if utils.get_peer_id(m.peer_id) == user.id
            ]
            message_id = mine[-1] if mine else 1
        update = raw.types.UpdateBotCallbackQuery(
            query_id=next(self._ids) * 104729,
            user_id=user.id,
            peer=raw.types.PeerUser(user_id=user.id),
            msg_id=message_id,
            chat_instance=user.id * 17,
            data=data.encode() if isinstance(data, str) else data,
        )
        return Incoming(update, users=(user,))

    def pre_checkout(
        self,
        user: RawUser,
        *,
        payload: bytes | str,
        total_amount: int,
        currency: str = "XTR",
    ) -> Incoming:
        update = raw.types.UpdateBotPrecheckoutQuery(
            query_id=next(self._ids) * 15485863,
            user_id=user.id,
            currency=currency,
            payload=payload.encode() if isinstance(payload, str) else payload,
            total_amount=total_amount,
        )
        return Incoming(update, users=(user,))

    def payment(
        self,
        user: RawUser,
        *,
        payload: bytes | str,
        total_amount: int,
        charge_id: str | None = None,
        currency: str = "XTR",
        provider_charge_id: str = "",
    ) -> Incoming:
        """The service message a successful payment leaves in the chat (a Stars payment also
        enters the bot's Stars history, as in Telegram)."""
        charge = raw.types.PaymentCharge(
            id=charge_id or f"stxCharge{next(self._ids)}", provider_charge_id=provider_charge_id
        )
        data = payload.encode() if isinstance(payload, str) else payload
        if currency == "XTR":
            self.server.stars.add(charge.id, user.id, total_amount, data)
        action = raw.types.MessageActionPaymentSentMe(
            currency=currency, total_amount=total_amount, charge=charge, payload=data
        )
        return self.service(user, action)

    # ---- Star subscriptions ----------------------------------------------------------------
    def pre_checkout_link(self, user: RawUser, url: str) -> Incoming:
        """The pre-checkout query of a user paying an invoice link the bot made."""
        link = self.server.subscriptions.link(url)
        return self.pre_checkout(
            user, payload=link.payload, total_amount=link.amount, currency=link.currency
        )

    def pay_link(self, user: RawUser, url: str, *, charge_id: str | None = None) -> Incoming:
        """A user pays a subscription's invoice link: its first payment (the subscription
        starts, for one period)."""
        link = self.server.subscriptions.link(url)
        charge = charge_id or f"stxSub{next(self._ids)}"
        sub = self.server.subscriptions.subscribe(link, user.id, charge)
        return self.subscription_payment(
            user, payload=link.payload, total_amount=link.amount, charge_id=charge,
            first=True, until=sub.until,
        )  # fmt: skip

    def renewal(
        self, user: RawUser, first_charge_id: str, *, charge_id: str | None = None
    ) -> Incoming:
        """Telegram renews a subscription for one more period: a new charge, the same payload.
        (Built even when renewal is off: a test decides what reaches the bot.)"""
        charge = charge_id or f"stxRenew{next(self._ids)}"
        sub = self.server.subscriptions.renew(first_charge_id, charge)
        return self.subscription_payment(
            user, payload=sub.payload, total_amount=sub.stars, charge_id=charge,
            first=False, until=sub.until,
        )  # fmt: skip

    def subscription_payment(
        self,
        user: RawUser,
        *,
        payload: bytes | str,
        total_amount: int,
        charge_id: str,
        first: bool,
        until: int,
    ) -> Incoming:
        """The service message of a subscription's payment: `recurring_init` on the first,
        `recurring_used` on every one, and the end of the period paid for."""
        data = payload.encode() if isinstance(payload, str) else payload
        self.server.stars.add(charge_id, user.id, total_amount, data, subscription_period=PERIOD)
        action = raw.types.MessageActionPaymentSentMe(
            currency="XTR",
            total_amount=total_amount,
            payload=data,
            charge=raw.types.PaymentCharge(id=charge_id, provider_charge_id=""),
            recurring_init=first or None,
            recurring_used=True,
            subscription_until_date=until,
        )
        return self.service(user, action)

    def change_subscription(
        self, user: RawUser, first_charge_id: str, *, canceled: bool
    ) -> Incoming:
        """The user turns renewal off (or back on) in their Telegram app
        (`payments.changeStarsSubscription`); the bot gets `updateBotStarsSubscription`."""
        request = raw.functions.payments.ChangeStarsSubscription(
            peer=raw.types.InputPeerSelf(), subscription_id=first_charge_id, canceled=canceled
        )
        request.write()  # a request Telegram could not read is a bug of the test
        sub = self.server.subscriptions.user_change(request, user.id)
        return self._subscription_update(
            user, sub.payload, canceled=canceled or None, restored=(not canceled) or None
        )

    def subscription_payment_failed(self, user: RawUser, first_charge_id: str) -> Incoming:
        """Telegram could not charge a renewal (not enough Stars): the period ends unrenewed."""
        sub = self.server.subscriptions.by_charge[first_charge_id]
        return self._subscription_update(user, sub.payload, payment_failed=True)

    def _subscription_update(self, user: RawUser, payload: bytes, **flags: Any) -> Incoming:
        update = raw.types.UpdateBotStarsSubscription(
            user_id=user.id, payload=payload, qts=next(self.server.qts), **flags
        )
        return Incoming(update, users=(user,))

    def refund(
        self,
        user: RawUser,
        *,
        charge_id: str,
        total_amount: int,
        payload: bytes | str | None = None,
        currency: str = "XTR",
    ) -> Incoming:
        """The service message a refunded payment leaves in the chat."""
        action = raw.types.MessageActionPaymentRefunded(
            peer=raw.types.PeerUser(user_id=user.id),
            currency=currency,
            total_amount=total_amount,
            charge=raw.types.PaymentCharge(id=charge_id, provider_charge_id=""),
            payload=payload.encode() if isinstance(payload, str) else payload,
        )
        return self.service(user, action)

    # ---- plumbing -------------------------------------------------------------------------
    def service(self, user: RawUser, action: Any) -> Incoming:
        """A service message (any raw MessageAction) in `user`'s private chat."""
        peer = raw.types.PeerUser(user_id=user.id)
        message = raw.types.MessageService(
            id=next(self.server.message_ids),
            peer_id=peer,
            from_id=peer,
            date=int(time.time()),
            action=action,
        )
        return self._new(message, users=(user,))

    def _new(
        self, message: Any, *, users: tuple[Any, ...], chats: tuple[Any, ...] = ()
    ) -> Incoming:
        channel = isinstance(message.peer_id, raw.types.PeerChannel)
        cls = raw.types.UpdateNewChannelMessage if channel else raw.types.UpdateNewMessage
        update = cls(message=message, pts=next(self.server.pts), pts_count=1)
        return Incoming(update, users=users, chats=chats)
