"""A generation's lifecycle as a state machine: statuses, triggers and guards, as data, no I/O.

    queued ─compose─► composing ─animate─► animating ─deliver─► delivering ─delivered─► done
       └──────────────────┴─────cancel─────────┘                     │
       └──────────────────┴──────────fail──────────┴──────────────────┘
    queued ─animate─► animating                   (a direct route: it never composes)

A style's route (`flick.routes`) is on the record: compose_animate composes a picture first;
a direct route has its model make the video from the photos, so it never composes.

`failed` and `canceled` are ends that always carry the refund: the SQL layer writes them in the
same transaction as the credit going back (`flick.models.money`), and the database refuses a row
that is both refunded and done (a CHECK constraint). `done` is the other end: the credit is spent.

**The point of no return is `delivering`.** From then on the video is being sent to the user, so
/cancel no longer refunds: the user is told the video is on its way. Before it, /cancel refunds.

Every status change goes through `GenerationRecord.trigger`; the SQL layer writes a change only if
the row still has the status the machine started from (compare-and-set), so when the runner and a
/cancel race, exactly one of them wins and the other is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from transitions import EventData, Machine


class Status(Enum):
    QUEUED = "queued"
    COMPOSING = "composing"
    ANIMATING = "animating"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"  # refunded
    CANCELED = "canceled"  # refunded


G = Status
#: A generation that has not ended yet: resumed after a restart.
ACTIVE = frozenset({G.QUEUED, G.COMPOSING, G.ANIMATING, G.DELIVERING})
#: What /cancel may still refund: everything before the point of no return.
CANCELABLE = frozenset({G.QUEUED, G.COMPOSING, G.ANIMATING})
#: The ends that gave the credit back.
REFUNDED = frozenset({G.FAILED, G.CANCELED})

# trigger, source(s), destination, guards. Read top to bottom: this is the whole lifecycle.
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "compose", "source": G.QUEUED, "dest": G.COMPOSING, "unless": ["direct_route"]},
    # A direct route animates the photos themselves: no picture to wait for.
    {
        "trigger": "animate",
        "source": G.QUEUED,
        "dest": G.ANIMATING,
        "conditions": ["direct_route"],
    },
    {
        "trigger": "animate",
        "source": [G.QUEUED, G.COMPOSING],
        "dest": G.ANIMATING,
        "conditions": ["has_combined_image"],
    },
    {
        "trigger": "deliver",
        "source": G.ANIMATING,
        "dest": G.DELIVERING,
        "conditions": ["has_prediction"],
    },
    {"trigger": "delivered", "source": G.DELIVERING, "dest": G.DONE},
    {"trigger": "cancel", "source": sorted(CANCELABLE, key=lambda s: s.value), "dest": G.CANCELED},
    {"trigger": "fail", "source": sorted(ACTIVE, key=lambda s: s.value), "dest": G.FAILED},
]


@dataclass(eq=False)
class GenerationRecord:
    """One generation row, typed: what the runner resumes from and the machine reads.

    The statuses change only through `trigger`; the other fields are what each step saved.
    """

    id: int
    user_id: int
    style: str
    photo_keys: tuple[str, str]
    status: Status = G.QUEUED
    combined_key: str | None = None
    video_key: str | None = None
    video_file_id: str | None = None
    prediction_id: str | None = None
    prediction_requested_at: datetime | None = None
    status_message_id: int | None = None
    charged: int = 1
    refunded: bool = False
    error_class: str | None = None
    created_at: datetime | None = None
    #: "compose_animate" or "direct" (flick.routes), the tier charged for, and the video model
    #: its prediction was asked of (saved before the create: a resumed run asks the same one).
    route: str = "compose_animate"
    tier: str | None = None
    video_model: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def cancelable(self) -> bool:
        return self.status in CANCELABLE

    # Guards: no I/O, only fields and the trigger's keyword arguments.
    def has_combined_image(self, event: EventData) -> bool:
        return bool(event.kwargs.get("combined_key") or self.combined_key)

    def direct_route(self, event: EventData) -> bool:
        return self.route == "direct"

    def has_prediction(self, event: EventData) -> bool:
        # Every video comes from a prediction whose id was saved (the fallback's too).
        return bool(self.prediction_id or self.video_key)

    def target(self, name: str, **kwargs: Any) -> Status | None:
        """Where the trigger would lead from here, or None when refused. Changes nothing."""
        probe = replace(self)
        return probe.status if probe.trigger(name, **kwargs) else None

    def trigger(self, name: str, **kwargs: Any) -> bool:
        """Fire a trigger on the shared machine; False when the machine refuses it."""
        event = MACHINE.events.get(name)
        return bool(event and event.trigger(self, **kwargs))


MACHINE = Machine(
    model=None,
    states=Status,
    transitions=TRANSITIONS,
    initial=G.QUEUED,
    model_attribute="status",
    send_event=True,
    auto_transitions=False,
    ignore_invalid_triggers=True,
    model_override=False,
)
