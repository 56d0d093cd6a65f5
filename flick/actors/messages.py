"""What an actor receives besides outside events: small frozen dataclasses from its own tasks,
from other users' actors (an operator's command) and from the engine (reconciliation)."""

from __future__ import annotations

from dataclasses import dataclass

from flick.errors import FinalError


@dataclass(frozen=True, slots=True)
class PhotoStored:
    key: str
    epoch: int  # which conversation it belongs to (see Conversation.epoch)
    event_id: str  # the update that brought it: recorded as handled only once it is counted


@dataclass(frozen=True, slots=True)
class PhotoRejected:
    reason: str  # a catalog key
    epoch: int
    event_id: str
    retry: bool = False  # a failure of ours: the photo's redelivery is taken again
    values: tuple[tuple[str, str | int], ...] = ()  # the reason's placeholders


@dataclass(frozen=True, slots=True)
class DrainMark:
    """Posted by an actor to itself: handled once everything queued before it has been, so it
    marks the end of one mailbox drain (see `flick.actors.handlers.bursts`)."""


@dataclass(frozen=True, slots=True)
class GenerationEnded:
    generation_id: int
    error: FinalError | None = None  # None: delivered (or ended elsewhere)
    recipient_gone: bool = False  # the video could not be sent: the user blocked the bot


@dataclass(frozen=True, slots=True)
class ResumeGeneration:
    generation_id: int


@dataclass(frozen=True, slots=True)
class Grant:
    """An operator's grant (or correction) for this user; the result is reported back to them."""

    credits: int
    note: str
    admin_id: int


@dataclass(frozen=True, slots=True)
class RefundPurchase:
    """An operator refunded this user's purchase at Telegram: take back what it bought."""

    charge_id: str
    admin_id: int


@dataclass(frozen=True, slots=True)
class AdminReport:
    """What another user's actor did on this operator's command, to tell them."""

    key: str  # a catalog key
    values: tuple[tuple[str, str | int], ...] = ()


@dataclass(frozen=True, slots=True)
class ReconciledCharge:
    """A Stars charge Telegram lists and the payments table lacks (found at start-up)."""

    charge_id: str
    stars: int
    payload: str
    subscription_period: int | None = None  # a Star subscription's payment (seconds)
    date: int = 0  # when Telegram took it (Unix time)


@dataclass(frozen=True, slots=True)
class ReferralBonus:
    """Someone this user invited made a first purchase: credit the inviter's bonus (once)."""

    referral_id: int


@dataclass(frozen=True, slots=True)
class RecipientBlocked:
    """A send to this user found they blocked the bot (a broadcast, a delivery)."""


@dataclass(frozen=True, slots=True)
class Crash:
    """Test hook: makes the actor raise, to exercise the supervisor's restart."""
