"""What an actor receives besides outside events: small frozen dataclasses from its own tasks."""

from __future__ import annotations

from dataclasses import dataclass

from flick.errors import FinalError


@dataclass(frozen=True, slots=True)
class PhotoStored:
    key: str
    epoch: int = 0  # which conversation it belongs to (see Conversation.epoch)


@dataclass(frozen=True, slots=True)
class PhotoRejected:
    reason: str  # a catalog key
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class GenerationEnded:
    generation_id: int
    error: FinalError | None = None  # None: delivered


@dataclass(frozen=True, slots=True)
class ResumeGeneration:
    generation_id: int


@dataclass(frozen=True, slots=True)
class Grant:
    """An operator's grant, routed through the actor so its in-memory balance stays exact."""

    credits: int
    note: str


@dataclass(frozen=True, slots=True)
class BalanceChanged:
    """Some other path (reconciliation, an admin refund) already changed the balance in the DB."""

    balance: int
    notice: str | None = None  # a catalog key to tell the user, if any


@dataclass(frozen=True, slots=True)
class Crash:
    """Test hook: makes the actor raise, to exercise the supervisor's restart."""
