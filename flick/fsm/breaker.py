"""A video model's circuit breaker as a state machine: states, triggers and guards, as data.

    closed ─failure (the threshold-th in a row)─► open ─probe (cooled down)─► half_open
      ▲  └─failure / success: counted, reset               ▲                   │ │
      └──────────────────────success (the trial call)──────┼───────────────────┘ │
                                                           └──failure (the trial)┘

While a model's circuit is open, new generations of a style that names a fallback model use the
fallback. After the cool-down the next generation is the trial: it goes to the model again, and
its outcome closes the circuit or opens it for another cool-down. Only transient failures count
(timeouts, 5xx, a prediction that never started): a model refusing a user's photos is not down.

Why not a library: `purgatory` (maintained, asyncio) and `aiobreaker` (last release 2021) wrap
one call in the breaker and raise when it is open; here the question comes first, at routing time
("is this model up, or should this generation use the fallback?"), and the outcome arrives minutes
later from a prediction, possibly after a restart. Both also read the wall clock themselves, so
their cool-down cannot be tested without sleeping; here time is a trigger argument (`now`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from transitions import EventData, Machine


class Circuit(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


C = Circuit

# trigger, source, destination, guards, data change. Read top to bottom: the whole breaker.
TRANSITIONS: list[dict[str, Any]] = [
    {
        "trigger": "failure",
        "source": C.CLOSED,
        "dest": C.OPEN,
        "conditions": ["reaches_threshold"],
        "after": "opened",
    },
    {"trigger": "failure", "source": C.CLOSED, "dest": None, "after": "count"},
    {"trigger": "success", "source": C.CLOSED, "dest": None, "after": "reset"},
    # The first generation after the cool-down is the trial; a trial that never reports (its
    # process died) is replaced by another after a further cool-down.
    {
        "trigger": "probe",
        "source": C.OPEN,
        "dest": C.HALF_OPEN,
        "conditions": ["cooled_down"],
        "after": "start_trial",
    },
    {
        "trigger": "probe",
        "source": C.HALF_OPEN,
        "dest": None,
        "conditions": ["trial_lost"],
        "after": "start_trial",
    },
    {"trigger": "success", "source": C.HALF_OPEN, "dest": C.CLOSED, "after": "reset"},
    {"trigger": "failure", "source": C.HALF_OPEN, "dest": C.OPEN, "after": "opened"},
]


@dataclass(eq=False)
class Breaker:
    """One model's circuit. `threshold` transient failures in a row open it for `cool_down`
    seconds; `now` (monotonic seconds) comes with each trigger."""

    threshold: int = 3
    cool_down: float = 120.0
    state: Circuit = C.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_at: float = 0.0

    # Guards: no I/O, only fields and the trigger's keyword arguments.
    def reaches_threshold(self, event: EventData) -> bool:
        return self.failures + 1 >= self.threshold

    def cooled_down(self, event: EventData) -> bool:
        return float(event.kwargs["now"]) - self.opened_at >= self.cool_down

    def trial_lost(self, event: EventData) -> bool:
        return float(event.kwargs["now"]) - self.trial_at >= self.cool_down

    # Data changes that belong to a transition.
    def count(self, event: EventData) -> None:
        self.failures += 1

    def reset(self, event: EventData) -> None:
        self.failures = 0

    def opened(self, event: EventData) -> None:
        self.failures = 0
        self.opened_at = float(event.kwargs["now"])

    def start_trial(self, event: EventData) -> None:
        self.trial_at = float(event.kwargs["now"])

    def trigger(self, name: str, **kwargs: Any) -> bool:
        """Fire a trigger on the shared machine; False when the machine refuses it."""
        event = MACHINE.events.get(name)
        return bool(event and event.trigger(self, **kwargs))


MACHINE = Machine(
    model=None,
    states=Circuit,
    transitions=TRANSITIONS,
    initial=C.CLOSED,
    model_attribute="state",
    send_event=True,
    auto_transitions=False,
    ignore_invalid_triggers=True,
    model_override=False,
)
