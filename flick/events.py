"""What the engine receives from the outside world: small frozen dataclasses, no Telegram types.

The Telegram adapter (and `flick chat`) turn their own updates into these; the supervisor routes
each to its user's actor. `event_id` identifies the update so that a redelivery is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: int
    chat_id: int
    username: str | None = None
    first_name: str | None = None
    language_code: str | None = None


@dataclass(frozen=True, slots=True)
class PhotoRef:
    """A photo or image document the user sent; `file_id` is what the outbox downloads."""

    file_id: str
    file_unique_id: str
    size: int | None = None
    width: int | None = None
    height: int | None = None
    mime_type: str | None = None
    as_document: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    user: UserInfo
    event_id: str


@dataclass(frozen=True, slots=True)
class Command(Event):
    name: str  # without the slash, lower case, bot mention stripped
    args: str = ""


@dataclass(frozen=True, slots=True)
class Text(Event):
    text: str


@dataclass(frozen=True, slots=True)
class Photo(Event):
    photo: PhotoRef
    media_group_id: str | None = None


@dataclass(frozen=True, slots=True)
class Unsupported(Event):
    """A message the bot cannot use here: sticker, voice, video, location, contact, a file…"""

    kind: str


@dataclass(frozen=True, slots=True)
class ButtonPress(Event):
    """An inline button press. `data` is untrusted: any client can send any bytes."""

    callback_id: str
    data: str
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class PreCheckout(Event):
    query_id: str
    currency: str
    total_amount: int
    payload: str


@dataclass(frozen=True, slots=True)
class PaymentSucceeded(Event):
    charge_id: str  # telegram_payment_charge_id
    provider_charge_id: str
    currency: str
    total_amount: int
    payload: str
    # A Star subscription's payment: the first (`first_recurring`) or a renewal (`recurring`),
    # and the end of the period it pays for (Unix time).
    recurring: bool = False
    first_recurring: bool = False
    subscription_until: int | None = None


@dataclass(frozen=True, slots=True)
class PaymentRefunded(Event):
    charge_id: str
    provider_charge_id: str | None
    currency: str
    total_amount: int
    payload: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionChanged(Event):
    """Telegram tells the bot a user's Star subscription changed (`updateBotStarsSubscription`):
    the user cancelled or restored its renewal in Telegram, or a renewal could not be paid."""

    payload: str  # the subscription invoice's payload
    state: str  # canceled, restored, payment_failed


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """A message from a group or channel: the bot answers private chats only."""

    chat_id: int
    event_id: str
