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
KEPT = ("photos/1/a.jpg", "photos/1/b.jpg")
ARGS: dict[str, dict[str, Any]] = {
    "create": {},
    "consent": {},
    "pick_style": {"style": "hug", "message_id": 10, "tiers": ("standard",)},
    "again_style": {"video": 3, "photos": KEPT},
    "again_same": {"video": 3, "photos": KEPT, "style": "hug", "tier": "hd"},
    "pick_tier": {"style": "hug", "tier": "hd", "tiers": ("quick", "hd"), "message_id": 10},
    "tier_gone": {},
    "photo_stored": {"key": "photos/1/b.jpg", "event_id": "m9"},
    "generate": {"generation_id": 5},
    "resume": {"generation_id": 5},
    "finish": {"generation_id": 5, "delivered": True},
    "cancel": {},
}

# trigger → {state: destination (None: refused whatever the guards)}
TABLE: dict[str, dict[State, State | None]] = {
    "create": {
        S.IDLE: S.CHOOSING_STYLE,
        S.CONSENT: S.CHOOSING_STYLE,
        S.CHOOSING_STYLE: S.CHOOSING_STYLE,
        S.CHOOSING_AGAIN: S.CHOOSING_STYLE,  # new photos after all
        S.CHOOSING_TIER: S.CHOOSING_STYLE,
        S.WAITING_FOR_PHOTOS: S.CHOOSING_STYLE,
        S.PROCESSING: None,  # one generation at a time
    },
    "consent": {s: (S.CHOOSING_STYLE if s is S.CONSENT else None) for s in S},
    # A style with one tier: straight to the photos (with several, see the test below).
    "pick_style": {
        s: (S.WAITING_FOR_PHOTOS if s in (S.CHOOSING_STYLE, S.CHOOSING_AGAIN) else None) for s in S
    },
    # The buttons under the latest video: from anywhere but while a video is being made.
    "again_style": {s: (None if s is S.PROCESSING else S.CHOOSING_AGAIN) for s in S},
    "again_same": {s: (None if s is S.PROCESSING else S.WAITING_FOR_PHOTOS) for s in S},
    "pick_tier": {s: (S.WAITING_FOR_PHOTOS if s is S.CHOOSING_TIER else None) for s in S},
    "tier_gone": {s: (S.CHOOSING_TIER if s is S.WAITING_FOR_PHOTOS else None) for s in S},
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
    "again_style": {
        "has_credit": lambda c, a: setattr(c, "balance", 0),
        "from_latest_video": lambda c, a: a.update(video=2),  # an older video's button
        "photos_kept": lambda c, a: a.update(photos=None),  # deleted by the sweeper
    },
    "again_same": {
        "has_credit": lambda c, a: setattr(c, "balance", 0),
        "from_latest_video": lambda c, a: a.update(video=2),
        "photos_kept": lambda c, a: a.update(photos=None),
        "known_style": lambda c, a: a.update(style="made-up"),  # no longer offered
    },
    "pick_tier": {
        "from_current_picker": lambda c, a: a.update(message_id=11),
        "same_style": lambda c, a: a.update(style="kiss"),
        "known_tier": lambda c, a: a.update(tier="vanished"),
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
    conv.last_video = 3
    if state is S.CHOOSING_AGAIN:
        conv.photos = list(KEPT)
    if state is S.WAITING_FOR_PHOTOS:
        conv.style, conv.photos = "hug", ["photos/1/a.jpg", "photos/1/b.jpg"]
        conv.tier = "quick"
    if state is S.CHOOSING_TIER:
        conv.style = "hug"
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
    before = (conv.state, list(conv.photos), conv.style, conv.tier, conv.generation_id, conv.epoch)
    assert not conv.trigger(trigger, **args)
    after = (conv.state, list(conv.photos), conv.style, conv.tier, conv.generation_id, conv.epoch)
    assert after == before


def test_a_style_with_several_tiers_asks_for_one_then_the_photos() -> None:
    conv = prepared(S.CHOOSING_STYLE)
    tiers = ("quick", "hd")
    assert conv.trigger("pick_style", style="hug", message_id=10, tiers=tiers)
    assert conv.state is S.CHOOSING_TIER and conv.style == "hug" and conv.tier is None
    assert conv.trigger("pick_tier", style="hug", tier="hd", tiers=tiers, message_id=10)
    assert state(conv) is S.WAITING_FOR_PHOTOS and conv.tier == "hd"
    assert conv.snapshot()["tier"] == "hd"


def test_a_style_with_one_tier_skips_the_step() -> None:
    conv = prepared(S.CHOOSING_STYLE)
    assert conv.trigger("pick_style", style="hug", message_id=10, tiers=("standard",))
    # Nothing chosen: its only tier is charged, as configured when the credits are taken.
    assert conv.state is S.WAITING_FOR_PHOTOS and conv.tier is None
    assert "tier" not in conv.snapshot()


def test_a_tier_gone_before_charging_asks_again_and_keeps_the_photos() -> None:
    conv = prepared(S.WAITING_FOR_PHOTOS)
    assert conv.trigger("tier_gone")
    assert conv.state is S.CHOOSING_TIER and conv.tier is None
    assert conv.photos == ["photos/1/a.jpg", "photos/1/b.jpg"]


def test_create_without_consent_asks_for_it_first() -> None:
    conv = Conversation(balance=1, consented=False, styles=STYLES)
    assert conv.trigger("create") and conv.state is S.CONSENT
    assert conv.trigger("consent") and conv.consented and state(conv) is S.CHOOSING_STYLE


def test_a_delivered_video_becomes_the_latest_and_outlives_the_next_create() -> None:
    conv = prepared(S.PROCESSING)
    assert conv.trigger("finish", generation_id=5, delivered=True) and conv.last_video == 5
    assert conv.trigger("create") and conv.last_video == 5
    assert conv.snapshot()["last_video"] == 5
    restored = Conversation(styles=STYLES)
    restored.restore(conv.state.value, conv.snapshot())
    assert restored.last_video == 5


def test_a_failed_generation_leaves_the_earlier_video_the_latest() -> None:
    conv = prepared(S.PROCESSING)
    assert conv.trigger("finish", generation_id=5) and conv.last_video == 3


def test_another_style_keeps_the_photos_into_the_generation() -> None:
    conv = prepared(S.IDLE)
    epoch = conv.epoch
    assert conv.trigger("again_style", video=3, photos=KEPT) and conv.state is S.CHOOSING_AGAIN
    assert conv.photos == list(KEPT) and conv.style is None and conv.epoch == epoch + 1
    conv.picker_message_id = 12
    assert conv.trigger("pick_style", style="hug", message_id=12)
    assert state(conv) is S.WAITING_FOR_PHOTOS and conv.photos == list(KEPT)
    assert conv.trigger("generate", generation_id=6) and state(conv) is S.PROCESSING


def test_try_again_takes_the_photos_and_the_style_at_once() -> None:
    conv = prepared(S.WAITING_FOR_PHOTOS)
    conv.photos = ["photos/1/new.jpg"]  # a new collection, abandoned for the button
    assert conv.trigger("again_same", video=3, photos=KEPT, style="hug")
    assert (conv.state, conv.photos, conv.style) == (S.WAITING_FOR_PHOTOS, list(KEPT), "hug")


def test_another_style_with_tiers_asks_the_tier_and_keeps_the_photos() -> None:
    conv = prepared(S.IDLE)
    assert conv.trigger("again_style", video=3, photos=KEPT)
    conv.picker_message_id = 12
    assert conv.trigger("pick_style", style="hug", message_id=12, tiers=("quick", "hd"))
    assert conv.state is S.CHOOSING_TIER and conv.photos == list(KEPT)
    assert conv.trigger("pick_tier", style="hug", tier="hd", tiers=("quick", "hd"), message_id=12)
    assert (conv.state, conv.photos, conv.tier) == (S.WAITING_FOR_PHOTOS, list(KEPT), "hd")


def test_try_again_keeps_the_tier_of_the_video() -> None:
    conv = prepared(S.IDLE)
    assert conv.trigger("again_same", video=3, photos=KEPT, style="hug", tier="hd")
    assert (conv.state, conv.style, conv.tier) == (S.WAITING_FOR_PHOTOS, "hug", "hd")
    assert conv.snapshot()["tier"] == "hd"
