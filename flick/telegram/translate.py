"""Kurigram's parsed objects → the engine's events. Pure functions: no I/O, no client calls.

What comes in is untrusted: any client can send any callback data, payload or text, so nothing
here interprets it beyond its shape; the engine checks it against server state.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Final

from pyrogram import enums, types

from flick.events import (
    ButtonPress,
    Command,
    Event,
    GroupMessage,
    PaymentRefunded,
    PaymentSucceeded,
    Photo,
    PhotoRef,
    PreCheckout,
    SubscriptionChanged,
    Text,
    Unsupported,
    UserInfo,
)

# Telegram's own rule for bot commands: 1-32 of a-z, 0-9 and "_" (clients accept capitals).
_COMMAND: Final = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{3,64}))?(?:\s+(.*))?$", re.S)

_PRIVATE: Final = frozenset({enums.ChatType.PRIVATE, enums.ChatType.BOT})

# Documents the engine may be able to use as a photo. Anything image/*, plus files whose
# sender's app did not know the type: the engine checks the content, so letting an odd one
# through costs one polite refusal, while refusing a real photo sent "as a file" costs a user.
_IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"})
_UNKNOWN_MIME: Final = frozenset({"", "application/octet-stream", "binary/octet-stream"})

Translated = Event | GroupMessage | None


def user_info(user: types.User, chat_id: int) -> UserInfo:
    return UserInfo(
        user_id=user.id,
        chat_id=chat_id,
        username=user.username,
        first_name=user.first_name,
        language_code=user.language_code,
    )


def text_or_bytes(value: str | bytes | None) -> str:
    """Callback data and payloads arrive as str, or as bytes when they are not UTF-8."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def parse_command(text: str) -> tuple[str, str] | None:
    """("start", "ref42") for "/Start@FlickBot ref42"; None when it is not a command."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    name, _mention, args = match.groups()
    return name.lower(), (args or "").strip()


def message_event(message: types.Message) -> Translated:
    """The event for one new message, or None when the engine has nothing to do with it."""
    if message.outgoing or message.chat is None:
        return None
    sender = message.from_user
    if sender is not None and sender.is_bot:
        return None  # bots talking to bots loop forever
    chat_id = message.chat.id
    if chat_id is None:
        return None
    if message.chat.type not in _PRIVATE:
        return GroupMessage(chat_id=chat_id, event_id=f"g{chat_id}:{message.id}")
    if sender is None:
        return None  # nobody to answer: no user behind it
    user = user_info(sender, chat_id)
    if message.service is not None:
        return _service_event(message, user)
    return _content_event(message, user, f"m{message.id}")


def _service_event(message: types.Message, user: UserInfo) -> Translated:
    paid = message.successful_payment
    if paid is not None and paid.telegram_payment_charge_id:
        until = paid.subscription_expiration_date
        return PaymentSucceeded(
            user=user,
            # The charge id, not the message id: the same payment redelivered is the same event.
            event_id=f"pay:{paid.telegram_payment_charge_id}",
            charge_id=paid.telegram_payment_charge_id,
            provider_charge_id=paid.provider_payment_charge_id or "",
            currency=paid.currency,
            total_amount=int(paid.total_amount),
            payload=text_or_bytes(paid.invoice_payload),
            recurring=bool(paid.is_recurring),
            first_recurring=bool(paid.is_first_recurring),
            subscription_until=int(until.timestamp()) if until is not None else None,
        )
    refund = message.refunded_payment
    if refund is not None and refund.telegram_payment_charge_id:
        return PaymentRefunded(
            user=user,
            event_id=f"refund:{refund.telegram_payment_charge_id}",
            charge_id=refund.telegram_payment_charge_id,
            provider_charge_id=refund.provider_payment_charge_id or None,
            currency=refund.currency,
            total_amount=int(refund.total_amount),
            payload=text_or_bytes(refund.invoice_payload) if refund.invoice_payload else None,
        )
    return None


def _content_event(message: types.Message, user: UserInfo, event_id: str) -> Translated:
    if message.text is not None:
        text = str(message.text)
        command = parse_command(text)
        if command is not None:
            return Command(user=user, event_id=event_id, name=command[0], args=command[1])
        return Text(user=user, event_id=event_id, text=text)
    group = str(message.media_group_id) if message.media_group_id is not None else None
    if message.photo is not None:
        photo = message.photo
        ref = PhotoRef(
            file_id=photo.file_id,
            file_unique_id=photo.file_unique_id,
            size=photo.file_size,
            width=photo.width,
            height=photo.height,
        )
        return Photo(user=user, event_id=event_id, photo=ref, media_group_id=group)
    if message.document is not None:
        doc = message.document
        if _maybe_image(doc.mime_type, doc.file_name):
            ref = PhotoRef(
                file_id=doc.file_id,
                file_unique_id=doc.file_unique_id,
                size=doc.file_size,
                mime_type=doc.mime_type,
                as_document=True,
            )
            return Photo(user=user, event_id=event_id, photo=ref, media_group_id=group)
        return Unsupported(user=user, event_id=event_id, kind="document")
    if message.media is not None:
        return Unsupported(user=user, event_id=event_id, kind=_kind(message.media))
    return None  # e.g. an empty message: nothing to answer


def _kind(media: Any) -> str:
    value = getattr(media, "value", None)
    return value if isinstance(value, str) else "other"


def _maybe_image(mime_type: str | None, file_name: str | None) -> bool:
    mime = (mime_type or "").lower()
    if mime.startswith("image/"):
        return True
    suffix = PurePosixPath(file_name or "").suffix.lower()
    return mime in _UNKNOWN_MIME or suffix in _IMAGE_SUFFIXES


def callback_event(query: types.CallbackQuery) -> Translated:
    sender = query.from_user
    if sender is None or sender.is_bot:
        return None
    message = query.message
    chat = getattr(message, "chat", None)
    if chat is not None and chat.type not in _PRIVATE:
        return None  # the bot puts buttons in private chats only
    # In a private chat the chat id is the user's id. Never take it from the message the query
    # names: kurigram may fetch that by id, and a stale id can name another user's message.
    chat_id = sender.id
    return ButtonPress(
        user=user_info(sender, chat_id),
        event_id=f"c{query.id}",
        callback_id=str(query.id),
        data=text_or_bytes(query.data),
        message_id=message.id if message is not None else None,
    )


def subscription_event(update: Any, users: dict[int, Any]) -> Translated:
    """`updateBotStarsSubscription` (kurigram has no parsed type for it): a user cancelled or
    restored a Star subscription's renewal in Telegram, or its renewal could not be paid."""
    raw_user = users.get(update.user_id)
    if raw_user is None or getattr(raw_user, "bot", False):
        return None
    if update.payment_failed:
        state = "payment_failed"
    elif update.canceled:
        state = "canceled"
    elif update.restored:
        state = "restored"
    else:
        return None
    user = UserInfo(
        user_id=raw_user.id,
        chat_id=raw_user.id,
        username=getattr(raw_user, "username", None),
        first_name=getattr(raw_user, "first_name", None),
        language_code=getattr(raw_user, "lang_code", None),
    )
    return SubscriptionChanged(
        user=user,
        # qts numbers the bot's updates of this kind: a redelivery has the same one.
        event_id=f"sub:{update.qts}:{update.user_id}",
        payload=text_or_bytes(update.payload),
        state=state,
    )


def pre_checkout_event(query: types.PreCheckoutQuery) -> Translated:
    sender = query.from_user
    if sender is None:
        return None
    # Whatever the currency or amount: the engine refuses what it did not offer, and Telegram
    # wants an answer either way.
    return PreCheckout(
        user=user_info(sender, sender.id),
        event_id=f"q{query.id}",
        query_id=str(query.id),
        currency=query.currency,
        total_amount=int(query.total_amount),
        payload=text_or_bytes(query.invoice_payload),
    )
