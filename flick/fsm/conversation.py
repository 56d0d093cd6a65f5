"""The conversation as a state machine: states, triggers and guards, as data, with no I/O.

The actor fires a trigger for an event; when the machine accepts it, the actor runs the effects
(replies, storage, generation). Guards read only the Conversation's own fields and the trigger's
arguments, so the whole behaviour can be tested without a database or Telegram.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from transitions import EventData, Machine


class State(Enum):
    IDLE = "idle"
    CONSENT = "consent"  # asked once, before the first generation
    CHOOSING_STYLE = "choosing_style"
    # "Another style" under a video: a style for the photos that video was made from.
    CHOOSING_AGAIN = "choosing_again"
    CHOOSING_TIER = "choosing_tier"  # only for a style that offers several quality tiers
    WAITING_FOR_PHOTOS = "waiting_for_photos"
    PROCESSING = "processing"


S = State
ANY_BUT_PROCESSING = [
    S.IDLE,
    S.CONSENT,
    S.CHOOSING_STYLE,
    S.CHOOSING_AGAIN,
    S.CHOOSING_TIER,
    S.WAITING_FOR_PHOTOS,
]
#: What the buttons under a video need: credit, that video being the latest, its photos kept.
AGAIN = ["has_credit", "from_latest_video", "photos_kept"]

# trigger, source(s), destination, guards, and the data change that belongs to the transition.
# Read top to bottom: this is the whole conversation.
TRANSITIONS: list[dict[str, Any]] = [
    {
        "trigger": "create",
        "source": ANY_BUT_PROCESSING,
        "dest": S.CONSENT,
        "conditions": ["has_credit"],
        "unless": ["has_consent"],
        "after": "clear",
    },
    {
        "trigger": "create",
        "source": ANY_BUT_PROCESSING,
        "dest": S.CHOOSING_STYLE,
        "conditions": ["has_credit", "has_consent"],
        "after": "clear",
    },
    {"trigger": "consent", "source": S.CONSENT, "dest": S.CHOOSING_STYLE, "after": "agree"},
    # `tiers`: the keys of the style's quality tiers, from the configuration. With several, the
    # user picks one next; with one, it is taken and the tier step skipped.
    {
        "trigger": "pick_style",
        "source": [S.CHOOSING_STYLE, S.CHOOSING_AGAIN],
        "dest": S.CHOOSING_TIER,
        "conditions": ["from_current_picker", "known_style", "offers_tiers"],
        "after": "set_style",
    },
    {
        "trigger": "pick_style",
        "source": [S.CHOOSING_STYLE, S.CHOOSING_AGAIN],
        "dest": S.WAITING_FOR_PHOTOS,
        "conditions": ["from_current_picker", "known_style"],
        "unless": ["offers_tiers"],
        "after": "set_style",
    },
    {
        # "Another style": the photos come from the video, the style from the next picker.
        "trigger": "again_style",
        "source": ANY_BUT_PROCESSING,
        "dest": S.CHOOSING_AGAIN,
        "conditions": AGAIN,
        "after": "reuse_photos",
    },
    {
        # "Try again": the same photos, style and tier; the generation starts next (a tier
        # gone from the configuration meanwhile is chosen again first: `tier_gone`).
        "trigger": "again_same",
        "source": ANY_BUT_PROCESSING,
        "dest": S.WAITING_FOR_PHOTOS,
        "conditions": [*AGAIN, "known_style"],
        "after": ["reuse_photos", "set_style", "set_tier"],
    },
    {
        "trigger": "pick_tier",
        "source": S.CHOOSING_TIER,
        "dest": S.WAITING_FOR_PHOTOS,
        "conditions": ["from_current_picker", "same_style", "known_tier"],
        "after": "set_tier",
    },
    {
        # The chosen tier is gone from the configuration by the time it is charged: choose
        # again (even if one is left: its price is shown first), keeping the photos.
        "trigger": "tier_gone",
        "source": S.WAITING_FOR_PHOTOS,
        "dest": S.CHOOSING_TIER,
        "after": "forget_tier",
    },
    {
        "trigger": "photo_stored",
        "source": S.WAITING_FOR_PHOTOS,
        "dest": None,
        "conditions": ["room_for_photo", "new_photo"],
        "after": "add_photo",
    },
    {
        # The money side (one credit taken, the generation row) is done first, in the
        # database; this records its result.
        "trigger": "generate",
        "source": S.WAITING_FOR_PHOTOS,
        "dest": S.PROCESSING,
        "conditions": ["has_two_photos"],
        "after": "set_generation",
    },
    {"trigger": "resume", "source": list(S), "dest": S.PROCESSING, "after": "set_generation"},
    {
        "trigger": "finish",
        "source": S.PROCESSING,
        "dest": S.IDLE,
        "conditions": ["is_current_generation"],
        "after": ["clear", "remember_video"],
    },
    {"trigger": "cancel", "source": list(S), "dest": S.IDLE, "after": "clear"},
]


@dataclass(eq=False)
class Conversation:
    """One user's conversation: what the machine reads and what `user_sessions` stores."""

    balance: int = 0
    consented: bool = False
    style: str | None = None
    tier: str | None = None  # the quality tier chosen (its price is read when charging)
    photos: list[str] = field(default_factory=list)  # storage keys, in arrival order
    # The update ids of those photos: saved with them, so a redelivered photo is recognised
    # even after a crash that lost the in-memory record of handled updates.
    photo_events: list[str] = field(default_factory=list)
    picker_message_id: int | None = None
    generation_id: int | None = None
    # The latest video delivered: only its buttons ("Another style", "Try again") still work.
    last_video: int | None = None
    epoch: int = 0  # bumped whenever the collected photos are forgotten
    pending_photos: int = 0  # downloads under way for this epoch (not saved: they report back)
    state: State = S.IDLE
    styles: Container[str] = frozenset()  # live view of the configured styles

    # Guards: no I/O, only fields and the trigger's keyword arguments.
    def has_credit(self, event: EventData) -> bool:
        return self.balance >= 1

    def has_consent(self, event: EventData) -> bool:
        return self.consented

    def from_current_picker(self, event: EventData) -> bool:
        message_id = event.kwargs.get("message_id")
        return message_id is None or message_id == self.picker_message_id

    def known_style(self, event: EventData) -> bool:
        return event.kwargs.get("style") in self.styles

    def offers_tiers(self, event: EventData) -> bool:
        return len(event.kwargs.get("tiers", ())) > 1

    def same_style(self, event: EventData) -> bool:
        return event.kwargs.get("style") == self.style

    def known_tier(self, event: EventData) -> bool:
        return event.kwargs.get("tier") in event.kwargs.get("tiers", ())

    def room_for_photo(self, event: EventData) -> bool:
        return len(self.photos) < 2

    def new_photo(self, event: EventData) -> bool:
        return event.kwargs.get("event_id") not in self.photo_events

    def has_two_photos(self, event: EventData) -> bool:
        return len(self.photos) == 2

    def is_current_generation(self, event: EventData) -> bool:
        return event.kwargs.get("generation_id") == self.generation_id

    def from_latest_video(self, event: EventData) -> bool:
        video = event.kwargs.get("video")
        return video is not None and video == self.last_video

    def photos_kept(self, event: EventData) -> bool:
        """The handler looked: both photos of that video are still in storage."""
        return len(event.kwargs.get("photos") or ()) == 2

    # Data changes that belong to a transition (its `after`): the handlers never set these.
    def agree(self, event: EventData) -> None:
        self.consented = True

    def set_style(self, event: EventData) -> None:
        self.style = event.kwargs["style"]
        # With one tier there is nothing to choose: the style's only tier is charged, as
        # configured when the credits are taken (None here).
        self.tier = None

    def set_tier(self, event: EventData) -> None:
        self.tier = event.kwargs.get("tier")  # "Try again" of a one-tier style has none

    def forget_tier(self, event: EventData) -> None:
        self.tier = None

    def add_photo(self, event: EventData) -> None:
        self.photos.append(event.kwargs["key"])
        if event.kwargs.get("event_id"):
            self.photo_events.append(event.kwargs["event_id"])

    def set_generation(self, event: EventData) -> None:
        self.generation_id = event.kwargs["generation_id"]
        if "style" in event.kwargs:
            self.style = event.kwargs["style"]

    def reuse_photos(self, event: EventData) -> None:
        self.clear()
        self.photos = list(event.kwargs["photos"])

    def remember_video(self, event: EventData) -> None:
        if event.kwargs.get("delivered"):
            self.last_video = event.kwargs["generation_id"]

    def clear(self, event: EventData | None = None) -> None:
        """Forget the collected photos; downloads still in flight will report as stale."""
        self.style = None
        self.tier = None
        self.photos = []
        self.photo_events = []
        self.picker_message_id = None
        self.generation_id = None
        self.epoch += 1
        self.pending_photos = 0

    # What survives a restart (user_sessions.data); balance and consent live on the user row.
    def snapshot(self) -> dict[str, Any]:
        data = {
            "style": self.style,
            "photos": list(self.photos),
            "photo_events": list(self.photo_events),
            "picker_message_id": self.picker_message_id,
            "generation_id": self.generation_id,
            "epoch": self.epoch,
        }
        if self.last_video is not None:  # absent until the first video: nothing to keep
            data["last_video"] = self.last_video
        if self.tier is not None:  # only a style with several tiers has one chosen
            data["tier"] = self.tier
        return data

    def restore(self, state: str, data: dict[str, Any]) -> None:
        try:
            self.state = State(state)
        except ValueError:
            self.state = S.IDLE
        self.style = data.get("style")
        self.tier = data.get("tier")
        self.photos = [str(p) for p in data.get("photos", [])][:2]
        self.photo_events = [str(p) for p in data.get("photo_events", [])][:2]
        self.picker_message_id = data.get("picker_message_id")
        self.generation_id = data.get("generation_id")
        self.last_video = data.get("last_video")
        self.epoch = int(data.get("epoch", 0))

    def trigger(self, name: str, **kwargs: Any) -> bool:
        """Fire a trigger on the shared machine; False when the machine refuses it."""
        event = MACHINE.events.get(name)
        return bool(event and event.trigger(self, **kwargs))


MACHINE = Machine(
    model=None,
    states=State,
    transitions=TRANSITIONS,
    initial=S.IDLE,
    send_event=True,
    auto_transitions=False,
    ignore_invalid_triggers=True,
    model_override=False,
)
