"""The generation lifecycle as a table, and as random walks: the specification of every credit.

No database, no I/O: `flick.fsm.generation` alone. The table lists every status × trigger, and
whether the machine accepts it (and where it leads) or refuses it; a hypothesis walk checks the
invariants that make money exact whatever order triggers come in.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from flick.fsm.generation import (
    ACTIVE,
    CANCELABLE,
    REFUNDED,
    GenerationRecord,
    Status,
)

G = Status
TRIGGERS = ("compose", "animate", "deliver", "delivered", "cancel", "fail")

# status, trigger → where it leads, or None: refused. With a combined image and a prediction saved,
# so the guards pass; the guards have their own rows below.
TABLE: dict[tuple[Status, str], Status | None] = {
    (G.QUEUED, "compose"): G.COMPOSING,
    (G.QUEUED, "animate"): G.ANIMATING,  # resumed with its image already saved
    (G.QUEUED, "deliver"): None,
    (G.QUEUED, "delivered"): None,
    (G.QUEUED, "cancel"): G.CANCELED,
    (G.QUEUED, "fail"): G.FAILED,
    (G.COMPOSING, "compose"): None,
    (G.COMPOSING, "animate"): G.ANIMATING,
    (G.COMPOSING, "deliver"): None,
    (G.COMPOSING, "delivered"): None,
    (G.COMPOSING, "cancel"): G.CANCELED,
    (G.COMPOSING, "fail"): G.FAILED,
    (G.ANIMATING, "compose"): None,
    (G.ANIMATING, "animate"): None,
    (G.ANIMATING, "deliver"): G.DELIVERING,
    (G.ANIMATING, "delivered"): None,
    (G.ANIMATING, "cancel"): G.CANCELED,
    (G.ANIMATING, "fail"): G.FAILED,
    # The point of no return: the video is on its way, /cancel no longer refunds.
    (G.DELIVERING, "compose"): None,
    (G.DELIVERING, "animate"): None,
    (G.DELIVERING, "deliver"): None,
    (G.DELIVERING, "delivered"): G.DONE,
    (G.DELIVERING, "cancel"): None,
    (G.DELIVERING, "fail"): G.FAILED,
    # Ends: nothing moves them. Refunded after delivered, delivered after refunded: refused.
    **{(end, trigger): None for end in (G.DONE, G.FAILED, G.CANCELED) for trigger in TRIGGERS},
}


def record(
    status: Status, *, image: bool = True, prediction: bool = True, route: str = "compose_animate"
) -> GenerationRecord:
    return GenerationRecord(
        route=route,
        id=1,
        user_id=7,
        style="hug",
        photo_keys=("a", "b"),
        status=status,
        combined_key="combined/7/x.jpg" if image else None,
        prediction_id="p1" if prediction else None,
    )


def test_the_table_covers_every_status_and_trigger() -> None:
    assert set(TABLE) == {(s, t) for s in Status for t in TRIGGERS}


def test_every_status_and_trigger_is_accepted_or_refused_as_the_table_says() -> None:
    for (status, trigger), expected in TABLE.items():
        r = record(status)
        accepted = r.trigger(trigger)
        assert accepted == (expected is not None), (status, trigger)
        assert r.status == (expected or status), (status, trigger)


def test_animate_is_refused_by_its_guard_without_a_combined_image() -> None:
    r = record(G.COMPOSING, image=False)
    assert r.target("animate") is None
    assert r.target("animate", combined_key="combined/7/y.jpg") is G.ANIMATING
    assert r.status is G.COMPOSING  # `target` changes nothing


def test_deliver_is_refused_by_its_guard_without_a_prediction() -> None:
    assert record(G.ANIMATING, prediction=False).target("deliver") is None


# A direct route (the model makes the video from the photos): the same table, except that it
# never composes and animates straight from queued, with no combined image.
DIRECT_TABLE: dict[tuple[Status, str], Status | None] = {
    **TABLE,
    (G.QUEUED, "compose"): None,
    (G.QUEUED, "animate"): G.ANIMATING,
    (G.COMPOSING, "animate"): None,  # never composing; were it, it has no picture to animate
}


def test_a_direct_route_skips_composing_as_its_table_says() -> None:
    for (status, trigger), expected in DIRECT_TABLE.items():
        r = record(status, image=False, route="direct")
        accepted = r.trigger(trigger)
        assert accepted == (expected is not None), (status, trigger)
        assert r.status == (expected or status), (status, trigger)


def test_a_compose_route_cannot_animate_from_queued_without_its_picture() -> None:
    assert record(G.QUEUED, image=False).target("animate") is None
    assert record(G.QUEUED, image=False, route="direct").target("animate") is G.ANIMATING


def test_the_sets_agree_with_the_table() -> None:
    assert {s for s in Status if TABLE[(s, "cancel")] is not None} == CANCELABLE
    assert {s for s in Status if TABLE[(s, "fail")] is not None} == ACTIVE
    assert {G.FAILED, G.CANCELED} == REFUNDED


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(TRIGGERS), max_size=20),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["compose_animate", "direct"]),
)
def test_any_order_of_triggers_ends_in_at_most_one_outcome(
    triggers: list[str], image: bool, prediction: bool, route: str
) -> None:
    r = record(G.QUEUED, image=image, prediction=prediction, route=route)
    history = [r.status]
    for trigger in triggers:
        before = replace(r)
        if r.trigger(trigger):
            history.append(r.status)
        else:
            assert r.status == before.status  # a refusal writes nothing
    ends = [s for s in history if s not in ACTIVE]
    # Exactly one outcome, and once there, never left: spent (done) or refunded, never both.
    assert len(ends) <= 1
    if ends:
        assert history[-1] == ends[0]
    # Nothing is refunded once the video was being delivered, except by failing to deliver it.
    if G.DELIVERING in history:
        assert G.CANCELED not in history
    # Statuses only move forward.
    order = [G.QUEUED, G.COMPOSING, G.ANIMATING, G.DELIVERING]
    active = [order.index(s) for s in history if s in ACTIVE]
    assert active == sorted(active)
    if route == "direct":
        assert G.COMPOSING not in history
