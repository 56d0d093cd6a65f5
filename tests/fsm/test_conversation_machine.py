"""The conversation machine alone (no database, no Telegram): random event sequences, and the
data each transition owns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flick.fsm.conversation import Conversation, State

STYLES = frozenset({"hug", "kiss"})

events = st.one_of(
    st.tuples(st.just("create"), st.just({})),
    st.tuples(st.just("consent"), st.just({})),
    st.tuples(
        st.just("pick_style"), st.fixed_dictionaries({"style": st.sampled_from(["hug", "x"])})
    ),
    st.tuples(
        st.just("photo_stored"),
        st.fixed_dictionaries(
            {
                "key": st.sampled_from(["p1", "p2", "p3"]),
                "event_id": st.sampled_from(["m1", "m2", "m3"]),
            }
        ),
    ),
    st.tuples(st.just("generate"), st.fixed_dictionaries({"generation_id": st.integers(1, 3)})),
    st.tuples(
        st.just("finish"),
        st.fixed_dictionaries({"generation_id": st.integers(1, 3), "delivered": st.booleans()}),
    ),
    st.tuples(st.just("cancel"), st.just({})),
    st.tuples(
        st.just("again_style"),
        st.fixed_dictionaries(
            {"video": st.integers(1, 3), "photos": st.sampled_from([None, ("k1", "k2")])}
        ),
    ),
    st.tuples(
        st.just("again_same"),
        st.fixed_dictionaries(
            {
                "video": st.integers(1, 3),
                "photos": st.sampled_from([None, ("k1", "k2")]),
                "style": st.sampled_from(["hug", "x"]),
            }
        ),
    ),
    st.tuples(st.just("resume"), st.fixed_dictionaries({"generation_id": st.integers(1, 3)})),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(events, max_size=30), st.integers(0, 2))
def test_random_events_keep_the_conversation_consistent(
    steps: list[tuple[str, dict[str, object]]], balance: int
) -> None:
    conv = Conversation(balance=balance, styles=STYLES)
    delivered: set[int | None] = {None}
    for name, kwargs in steps:
        before = (conv.state, list(conv.photos), conv.epoch)
        current = conv.generation_id
        accepted = conv.trigger(name, **kwargs)
        if accepted and name == "finish" and kwargs["delivered"]:
            delivered.add(current)
        if not accepted:
            assert (conv.state, list(conv.photos), conv.epoch) == before
        # Never more than two photos, never the same update counted twice.
        assert len(conv.photos) <= 2
        assert len(set(conv.photo_events)) == len(conv.photo_events)
        # Photos are collected only while waiting for them (or kept into the generation).
        if conv.state in (State.IDLE, State.CONSENT, State.CHOOSING_STYLE):
            assert conv.photos == [] and conv.generation_id is None
        if conv.state is State.PROCESSING:
            assert conv.generation_id is not None
        if conv.state is State.WAITING_FOR_PHOTOS:
            assert conv.style in STYLES
        if conv.state is State.CHOOSING_AGAIN:  # the kept photos, a style still to pick
            assert conv.photos == ["k1", "k2"] and conv.style is None
        # Only a delivered video can be the latest one; the buttons of no other work.
        assert conv.last_video in delivered


def test_a_redelivered_photo_is_not_counted_twice() -> None:
    conv = Conversation(balance=1, consented=True, styles=STYLES)
    assert conv.trigger("create") and conv.trigger("pick_style", style="hug")
    assert conv.trigger("photo_stored", key="p1", event_id="m5")
    assert not conv.trigger("photo_stored", key="p1-again", event_id="m5")
    assert conv.photos == ["p1"]


def test_cancel_forgets_the_photos_and_moves_the_epoch() -> None:
    conv = Conversation(balance=1, consented=True, styles=STYLES)
    conv.trigger("create")
    conv.trigger("pick_style", style="kiss")
    conv.trigger("photo_stored", key="p1", event_id="m1")
    epoch = conv.epoch
    assert conv.trigger("cancel")
    assert (conv.state, conv.photos, conv.style) == (State.IDLE, [], None)
    assert conv.epoch == epoch + 1
