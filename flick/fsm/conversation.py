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
    WAITING_FOR_PHOTOS = "waiting_for_photos"
    PROCESSING = "processing"


S = State
ANY_BUT_PROCESSING = [S.IDLE, S.CONSENT, S.CHOOSING_STYLE, S.WAITING_FOR_PHOTOS]

# trigger, source(s), destination, guards. Read top to bottom: this is the whole conversation.
TRANSITIONS: list[dict[str, Any]] = [
    {
        "trigger": "create",
        "source": ANY_BUT_PROCESSING,
        "dest": S.CONSENT,
        "conditions": ["has_credit"],
        "unless": ["has_consent"],
    },
    {
        "trigger": "create",
        "source": ANY_BUT_PROCESSING,
        "dest": S.CHOOSING_STYLE,
        "conditions": ["has_credit", "has_consent"],
    },
    {"trigger": "consent", "source": S.CONSENT, "dest": S.CHOOSING_STYLE},
    {
        "trigger": "pick_style",
        "source": S.CHOOSING_STYLE,
        "dest": S.WAITING_FOR_PHOTOS,
        "conditions": ["from_current_picker", "known_style"],
    },
    {
        "trigger": "photo_stored",
        "source": S.WAITING_FOR_PHOTOS,
        "dest": None,
        "conditions": ["room_for_photo"],
    },
    {
        "trigger": "generate",
        "source": S.WAITING_FOR_PHOTOS,
        "dest": S.PROCESSING,
        "conditions": ["has_two_photos", "has_credit"],
    },
    {"trigger": "resume", "source": list(S), "dest": S.PROCESSING},
    {
        "trigger": "finish",
        "source": S.PROCESSING,
        "dest": S.IDLE,
        "conditions": ["is_current_generation"],
    },
    {"trigger": "cancel", "source": list(S), "dest": S.IDLE},
]


@dataclass(eq=False)
class Conversation:
    """One user's conversation: what the machine reads and what `user_sessions` stores."""

    balance: int = 0
    consented: bool = False
    style: str | None = None
    photos: list[str] = field(default_factory=list)  # storage keys, in arrival order
    picker_message_id: int | None = None
    generation_id: int | None = None
    epoch: int = 0  # bumped whenever the collected photos are forgotten
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

    def room_for_photo(self, event: EventData) -> bool:
        return len(self.photos) < 2

    def has_two_photos(self, event: EventData) -> bool:
        return len(self.photos) == 2

    def is_current_generation(self, event: EventData) -> bool:
        return event.kwargs.get("generation_id") == self.generation_id

    # What survives a restart (user_sessions.data); balance and consent live on the user row.
    def snapshot(self) -> dict[str, Any]:
        return {
            "style": self.style,
            "photos": list(self.photos),
            "picker_message_id": self.picker_message_id,
            "generation_id": self.generation_id,
            "epoch": self.epoch,
        }

    def restore(self, state: str, data: dict[str, Any]) -> None:
        try:
            self.state = State(state)
        except ValueError:
            self.state = S.IDLE
        self.style = data.get("style")
        self.photos = [str(p) for p in data.get("photos", [])][:2]
        self.picker_message_id = data.get("picker_message_id")
        self.generation_id = data.get("generation_id")
        self.epoch = int(data.get("epoch", 0))

    def clear(self) -> None:
        self.style = None
        self.photos = []
        self.picker_message_id = None
        self.generation_id = None
        self.epoch += 1

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


def attach(conversation: Conversation) -> Conversation:
    """Nothing to bind: the one shared machine works on any Conversation passed to it.

    (transitions' add_model would keep every live conversation in a list, which costs memory
    and an O(n) removal per actor at 100,000 users.)
    """
    return conversation


def detach(conversation: Conversation) -> None:
    """The counterpart of attach, kept so the actor's lifecycle reads symmetrically."""
