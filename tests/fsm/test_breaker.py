"""A video model's circuit breaker as a table, and the model choice built on it: no I/O, time is
a number handed in (`now`), so the cool-down is tested without waiting for it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flick.fsm.breaker import Breaker, Circuit
from flick.fsm.generation import GenerationRecord
from flick.pipeline.model_choice import ModelChooser
from flick.routes import ModelSpec, Route

C = Circuit
TRIGGERS = ("failure", "success", "probe")

# state, trigger → where it leads (None: refused), for a breaker one failure short of its
# threshold, cooled down, with its trial lost: every guard passes.
TABLE: dict[tuple[Circuit, str], Circuit | None] = {
    (C.CLOSED, "failure"): C.OPEN,
    (C.CLOSED, "success"): C.CLOSED,
    (C.CLOSED, "probe"): None,
    (C.OPEN, "failure"): None,
    (C.OPEN, "success"): None,
    (C.OPEN, "probe"): C.HALF_OPEN,
    (C.HALF_OPEN, "failure"): C.OPEN,
    (C.HALF_OPEN, "success"): C.CLOSED,
    (C.HALF_OPEN, "probe"): C.HALF_OPEN,
}


def prepared(state: Circuit) -> Breaker:
    return Breaker(threshold=3, cool_down=60, state=state, failures=2, opened_at=0, trial_at=0)


@pytest.mark.parametrize(("state", "trigger"), list(TABLE))
def test_each_state_and_trigger_as_the_table_says(state: Circuit, trigger: str) -> None:
    breaker = prepared(state)
    expected = TABLE[(state, trigger)]
    assert breaker.trigger(trigger, now=100.0) == (expected is not None)
    assert breaker.state is (expected or state)


def test_failures_below_the_threshold_keep_it_closed_and_a_success_forgets_them() -> None:
    breaker = Breaker(threshold=3, cool_down=60)
    assert breaker.trigger("failure", now=1) and breaker.trigger("failure", now=2)
    assert (breaker.state, breaker.failures) == (C.CLOSED, 2)
    assert breaker.trigger("success", now=3)
    assert breaker.failures == 0
    breaker.trigger("failure", now=4)
    breaker.trigger("failure", now=5)
    assert breaker.state is C.CLOSED  # not three in a row


def state_of(breaker: Breaker) -> Circuit:
    """The state now (a plain read: mypy would keep the one narrowed before a trigger)."""
    return breaker.state


def test_an_open_circuit_waits_out_its_cool_down_before_a_trial() -> None:
    breaker = prepared(C.CLOSED)
    breaker.trigger("failure", now=10)
    assert breaker.state is C.OPEN
    assert not breaker.trigger("probe", now=69)  # 59 s: still cooling down
    assert breaker.trigger("probe", now=70) and state_of(breaker) is C.HALF_OPEN
    # One trial at a time: the others are refused until it reports, or is lost.
    assert not breaker.trigger("probe", now=71)
    assert breaker.trigger("probe", now=130)


def record(gen_id: int = 1) -> GenerationRecord:
    return GenerationRecord(id=gen_id, user_id=7, style="together", photo_keys=("a", "b"))


ROUTE = Route(
    "direct",
    ModelSpec("kwaivgi/kling-v1.6-standard", "reference_images"),
    ModelSpec("bytedance/seedance-1-lite", "reference_images"),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_fallback_serves_while_the_model_is_down_and_the_model_returns_after_a_trial() -> None:
    clock = Clock()
    metrics: list[tuple[str, dict[str, str], float]] = []
    chooser = ModelChooser(
        threshold=2, cool_down=60, clock=clock, on_metric=lambda *m: metrics.append(m)
    )
    kling, seedance = "kwaivgi/kling-v1.6-standard", "bytedance/seedance-1-lite"
    assert chooser.choose(ROUTE, record()) == kling
    chooser.failed(kling)
    assert chooser.choose(ROUTE, record()) == kling  # one failure is not "down"
    chooser.failed(kling)
    # Open: new generations use the fallback, each switch counted.
    assert chooser.choose(ROUTE, record(2)) == seedance
    assert chooser.choose(ROUTE, record(3)) == seedance
    switches = [m for m in metrics if m[0] == "model_switch"]
    assert switches == [("model_switch", {"model": kling, "to": seedance}, 1)] * 2
    assert ("model_circuit", {"model": kling, "state": "open"}, 1) in metrics
    # After the cool-down one generation tries the model again; the others keep the fallback.
    clock.now += 60
    assert chooser.choose(ROUTE, record(4)) == kling
    assert chooser.choose(ROUTE, record(5)) == seedance
    chooser.succeeded(kling)  # the trial worked: closed
    assert chooser.breaker(kling).state is C.CLOSED
    assert ("model_circuit", {"model": kling, "state": "closed"}, 1) in metrics
    assert chooser.choose(ROUTE, record(6)) == kling


def test_a_failed_trial_opens_the_circuit_for_another_cool_down() -> None:
    clock = Clock()
    chooser = ModelChooser(threshold=1, cool_down=60, clock=clock)
    kling, seedance = "kwaivgi/kling-v1.6-standard", "bytedance/seedance-1-lite"
    chooser.failed(kling)
    clock.now += 60
    assert chooser.choose(ROUTE, record()) == kling  # the trial
    chooser.failed(kling)
    assert chooser.breaker(kling).state is C.OPEN
    clock.now += 59
    assert chooser.choose(ROUTE, record(2)) == seedance


def test_a_generation_that_asked_a_model_keeps_it_whatever_the_circuit_says() -> None:
    chooser = ModelChooser(threshold=1, cool_down=60, clock=Clock())
    chooser.failed("kwaivgi/kling-v1.6-standard")
    resumed = record()
    resumed.video_model = "kwaivgi/kling-v1.6-standard"
    resumed.prediction_requested_at = datetime.now(UTC)
    assert chooser.choose(ROUTE, resumed) == "kwaivgi/kling-v1.6-standard"


def test_a_style_without_a_fallback_always_uses_its_model() -> None:
    chooser = ModelChooser(threshold=1, cool_down=60, clock=Clock())
    route = Route("compose_animate")
    chooser.failed(None)
    assert chooser.choose(route, record()) is None  # the provider's VIDEO_MODEL
