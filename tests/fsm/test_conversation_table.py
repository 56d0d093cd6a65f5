"""The conversation as a table: every state × trigger, accepted (and where it leads) or refused,
and by which guard. This is the specification of what a user can do when.

Each row fires the trigger on a conversation prepared so that every guard passes, then again with
each guard made to fail in turn: the "refused by" column names the guards that stop it.
"""

from __future__ import annotations

from typing import Any

import pytest

from flick.fsm.conversation import Conversation, State

S = State
STYLES = frozenset({"hug"})
ARGS: dict[str, dict[str, Any]] = {
    "create": {},
    "consent": {},
    "pick_style": {"style": "hug", "message_id": 10},
    "photo_stored": {"key": "photos/1/b.jpg", "event_id": "m9"},
    "generate": {"generation_id": 5},
    "resume": {"generation_id": 5},
    "finish": {"generation_id": 5},
    "cancel": {},
}

# trigger → {state: destination (None: refused whatever the guards)}
TABLE: dict[str, dict[State, State | None]] = {
    "create": {
        S.IDLE: S.CHOOSING_STYLE,
        S.CONSENT: S.CHOOSING_STYLE,
        S.CHOOSING_STYLE: S.CHOOSING_STYLE,
        S.WAITING_FOR_PHOTOS: S.CHOOSING_STYLE,
        S.PROCESSING: None,  # one generation at a time
    },
    "consent": {s: (S.CHOOSING_STYLE if s is S.CONSENT else None) for s in S},
    "pick_style": {s: (S.WAITING_FOR_PHOTOS if s is S.CHOOSING_STYLE else None) for s in S},
    "photo_stored": {s: (S.WAITING_FOR_PHOTOS if s is S.WAITING_FOR_PHOTOS else None) for s in S},
    "generate": {s: (S.PROCESSING if s is S.WAITING_FOR_PHOTOS else None) for s in S},
    "resume": dict.fromkeys(S, S.PROCESSING),  # after a restart, from wherever it was saved
    "finish": {s: (S.IDLE if s is S.PROCESSING else None) for s in S},
    "cancel": dict.fromkeys(S, S.IDLE),
}

# trigger → the guards that can refuse it, each with how to make it fail.
GUARDS: dict[str, dict[str, Any]] = {
    "create": {"has_credit": lambda c, a: setattr(c, "balance", 0)},
    "pick_style": {
        "from_current_picker": lambda c, a: a.update(message_id=11),
        "known_style": lambda c, a: a.update(style="made-up"),
    },
    "photo_stored": {
        "room_for_photo": lambda c, a: c.photos.extend(["x", "y"]),
        "new_photo": lambda c, a: c.photo_events.append(a["event_id"]),
    },
    "generate": {"has_two_photos": lambda c, a: c.photos.pop()},
    "finish": {"is_current_generation": lambda c, a: a.update(generation_id=6)},
}


def state(conv: Conversation) -> State:
    """The state now (read through a call, so that a type checker does not keep an earlier
    `conv.state is ...` as true after a trigger changed it)."""
    return conv.state


def prepared(state: State) -> Conversation:
    """A conversation in `state` where every guard passes."""
    conv = Conversation(balance=1, consented=True, styles=STYLES, state=state)
    conv.picker_message_id = 10
    if state is S.WAITING_FOR_PHOTOS:
        conv.style, conv.photos = "hug", ["photos/1/a.jpg", "photos/1/b.jpg"]
    if state is S.PROCESSING:
        conv.generation_id = 5
    return conv


def test_the_table_covers_every_trigger_and_state() -> None:
    assert set(TABLE) == set(ARGS)
    assert all(set(row) == set(S) for row in TABLE.values())


@pytest.mark.parametrize(("trigger", "state"), [(t, s) for t in TABLE for s in S])
def test_each_state_and_trigger_as_the_table_says(trigger: str, state: State) -> None:
    conv = prepared(state)
    if trigger == "photo_stored" and state is S.WAITING_FOR_PHOTOS:
        conv.photos = ["photos/1/a.jpg"]  # room for the second
    expected = TABLE[trigger][state]
    assert conv.trigger(trigger, **ARGS[trigger]) == (expected is not None)
    assert conv.state is (expected or state)


@pytest.mark.parametrize(
    ("trigger", "guard"), [(t, g) for t, guards in GUARDS.items() for g in guards]
)
def test_each_guard_refuses_its_trigger_and_changes_nothing(trigger: str, guard: str) -> None:
    source: S = S.IDLE
    if trigger != "create":
        source = next(
            s for s, dest in TABLE[trigger].items() if dest is not None and s is not S.IDLE
        )
    conv = prepared(source)
    if trigger == "photo_stored":
        conv.photos = []
    args = dict(ARGS[trigger])
    GUARDS[trigger][guard](conv, args)
    before = (conv.state, list(conv.photos), conv.style, conv.generation_id, conv.epoch)
    assert not conv.trigger(trigger, **args)
    assert (conv.state, list(conv.photos), conv.style, conv.generation_id, conv.epoch) == before


def test_create_without_consent_asks_for_it_first() -> None:
    conv = Conversation(balance=1, consented=False, styles=STYLES)
    assert conv.trigger("create") and state(conv) is S.CONSENT
    assert conv.trigger("consent") and conv.consented and state(conv) is S.CHOOSING_STYLE
