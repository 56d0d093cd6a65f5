"""Every kind of provider failure: a final one ends in one refund, a message that says what to do
and the user back at IDLE (never stuck in PROCESSING), with the error's class on the row; a
transient one is retried inside the step's budget and the video is delivered for one credit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from flick.fsm.conversation import State
from flick.pipeline.runner import PipelineConfig
from flick.testing.engine import EngineHarness
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.faults import Fault
from flick.testing.generation_tools import GenerationTools

Harness = Callable[..., Awaitable[EngineHarness]]  # the `harness` fixture
UID = 7101


@dataclass(frozen=True)
class Case:
    op: str  # "images.edit" on the OpenAI fake; anything else is the Replicate fake's
    faults: tuple[Fault, ...]
    error_class: str
    message: str  # catalog key of what the user is told
    pipeline: dict[str, Any] | None = None  # PipelineConfig overrides
    every: Fault | None = None  # answers every request once `faults` are used (a service down)


FINAL = {
    "openai_moderation_blocked": Case(
        "images.edit", (Fault.moderation_blocked(),), "moderation_blocked", "failed_moderation"
    ),
    "openai_reply_without_image": Case(
        "images.edit", (Fault.malformed("no_image"),), "no_image", "failed_no_image"
    ),
    "openai_400_other": Case(
        "images.edit",
        (Fault.status(400, code="invalid_value", message="Invalid value for 'size'."),),
        "invalid_request",
        "failed_generic",
    ),
    "openai_400_unreadable_photo": Case(
        "images.edit",
        (Fault.status(400, code="invalid_image_format", message="Invalid image file."),),
        "invalid_input",
        "failed_bad_photo",
    ),
    "openai_401": Case(
        "images.edit",
        (Fault.status(401, code="invalid_api_key", message="Incorrect API key provided"),),
        "auth",
        "failed_generic",
    ),
    "openai_hangs": Case(
        "images.edit",
        (Fault.latency(30),),
        "timeout",
        "failed_timeout",
        {"compose_budget": 0.5},
    ),
    "openai_500_until_the_budget_is_spent": Case(
        "images.edit",
        (),
        "timeout",
        "failed_timeout",
        {"compose_budget": 0.5},
        every=Fault.status(500),
    ),
    "prediction_fails": Case(
        "predictions.create",
        (Fault.prediction_fails("CUDA error: out of memory"),),
        "prediction_failed",
        "failed_generic",
    ),
    "prediction_refused_as_nsfw": Case(
        "predictions.create",
        (Fault.prediction_fails("NSFW content detected in the input image"),),
        "moderation_blocked",
        "failed_moderation",
    ),
    "prediction_never_finishes": Case(
        "predictions.create",
        (Fault.never_finishes(),),
        "timeout",
        "failed_timeout",
        {"animate_budget": 0.6},
    ),
    "replicate_create_hangs": Case(
        "predictions.create",
        (Fault.latency(30),),
        "timeout",
        "failed_timeout",
        {"animate_budget": 0.5},
    ),
    "replicate_422_invalid_input": Case(
        "predictions.create",
        (Fault.status(422, message="input.resolution: must be one of 480p, 720p"),),
        "invalid_request",
        "failed_generic",
    ),
    "output_404": Case("output", (Fault.output_404(),), "bad_output", "failed_bad_output"),
    "output_is_html": Case("output", (Fault.output_html(),), "bad_output", "failed_bad_output"),
    "video_too_large": Case(
        "output",
        (Fault.output_large(300_000),),
        "video_too_large",
        "failed_video_failed",
        {"max_video_bytes": 100_000},
    ),
    "video_too_large_without_content_length": Case(
        "output",
        (Fault.output_large(300_000, chunked=True),),
        "video_too_large",
        "failed_video_failed",
        {"max_video_bytes": 100_000},
    ),
}


def _fake(case: Case, fake_openai: Any, fake_replicate: Any) -> Any:
    return fake_openai if case.op == "images.edit" else fake_replicate


@pytest.mark.parametrize("name", list(FINAL))
async def test_a_final_failure_refunds_once_and_tells_the_user(
    name: str,
    harness: Harness,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    case = FINAL[name]
    fake = _fake(case, fake_openai, fake_replicate)
    fake.script(case.op, *case.faults)
    fake.script_every(case.op, case.every)
    h = await harness(pipeline=replace(gen.FAST, **(case.pipeline or {})))
    await h.make_video(UID)

    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"], row["error_class"]) == (
        "failed",
        True,
        case.error_class,
    )
    assert row["error_message"]
    assert row["video_key"] is None
    assert gen.videos(h, UID) == []

    # Refunded exactly once, and the ledger says why.
    assert await h.balance(UID) == 1
    assert await gen.ledger(UID) == [
        ("free", 1, 1, None),
        ("generation", -1, 0, gen_id),
        ("refund", 1, 1, gen_id),
    ]
    # One clear message, with a way to try again.
    told = [s for s in h.outbox.to(UID) if s.text == gen.t("en", case.message, n=1)]
    assert len(told) == 1, gen.sent_texts(h, UID)
    assert told[0].buttons() == [(gen.t("en", "button_another"), "create")]
    # Back at IDLE, in memory and in the database: /create works again.
    assert gen.actor_state(h, UID) in (State.IDLE, None)
    assert await gen.session_state(UID) == State.IDLE.value
    assert h.app.supervisor.generations_running == 0


async def test_moderation_message_asks_for_other_photos(
    harness: Harness, gen: GenerationTools, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script("images.edit", Fault.moderation_blocked())
    h = await harness()
    await h.make_video(UID)
    text = gen.t("en", "failed_moderation", n=1)
    assert text in gen.sent_texts(h, UID)
    assert "other photos" in text
    assert len(fake_openai.calls("images.edit")) == 1  # a refusal is not retried


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(500),
        Fault.status(429, retry_after=0.3),
        Fault.malformed("json"),
        Fault.disconnect(),
    ],
    ids=["500", "429_retry_after", "malformed_json", "disconnect"],
)
async def test_a_transient_openai_failure_is_retried_and_delivered(
    fault: Fault,
    harness: Harness,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fake_openai.script("images.edit", fault)
    h = await harness()
    await h.make_video(UID)

    row = await gen.generation(await gen.generation_id(UID))
    assert row["status"] == "done" and row["refunded"] is False
    assert len(gen.videos(h, UID)) == 1
    edits = fake_openai.calls("images.edit")
    assert [e.fault for e in edits] == [fault, None]
    assert fake_replicate.predictions_created == 1
    assert await h.balance(UID) == 0
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]
    if fault.retry_after is not None:
        # Retry-After honoured: the second request waited at least that long after the first.
        assert edits[0].finished is not None
        assert edits[1].started - edits[0].finished >= fault.retry_after - 0.01


async def test_retry_after_beyond_the_budget_gives_up_at_once(
    harness: Harness, gen: GenerationTools, fake_openai: FakeOpenAI
) -> None:
    """A 429 asking to come back after the budget ends: no pointless wait, no second call."""
    fake_openai.script("images.edit", Fault.status(429, retry_after=60))
    h = await harness(pipeline=replace(gen.FAST, compose_budget=30))
    await h.make_video(UID)
    row = await gen.generation(await gen.generation_id(UID))
    assert (row["status"], row["error_class"]) == ("failed", "timeout")
    assert len(fake_openai.calls("images.edit")) == 1
    assert gen.t("en", "failed_timeout", n=1) in gen.sent_texts(h, UID)
    assert await h.balance(UID) == 1


@pytest.mark.parametrize(
    ("op", "fault"),
    [
        ("predictions.create", Fault.status(503)),
        ("predictions.create", Fault.status(429, retry_after=0.2)),
        ("predictions.get", Fault.status(500)),
        ("predictions.get", Fault.malformed("json")),
        ("output", Fault.status(502)),
    ],
    ids=["create_503", "create_429", "poll_500", "poll_malformed", "output_502"],
)
async def test_a_transient_replicate_failure_never_pays_twice(
    op: str, fault: Fault, harness: Harness, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script(op, fault)
    h = await harness()
    await h.make_video(UID)

    row = await gen.generation(await gen.generation_id(UID))
    assert row["status"] == "done" and row["refunded"] is False
    assert len(gen.videos(h, UID)) == 1
    # A failed create made no prediction; a failed poll or download polls the same one again.
    assert fake_replicate.predictions_created == 1
    assert row["prediction_id"] in fake_replicate.predictions
    assert fake_replicate.calls(op)[0].fault == fault
    assert await h.balance(UID) == 0


async def test_a_prediction_stuck_starting_is_replaced(
    harness: Harness, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    """A prediction that never gets a machine is canceled (nothing was billed) and a new one is
    made; the row follows the new one and the user pays one credit."""
    fake_replicate.start_delay = 3600
    h = await harness(pipeline=replace(gen.FAST, starting_timeout=0.2))
    gen_id = await gen.start_generation(h, UID)
    await gen.wait_for(lambda: _created(fake_replicate, 1), "the first prediction was created")
    fake_replicate.start_delay = 0.03  # the next one starts normally
    await h.settle()

    row = await gen.generation(gen_id)
    assert row["status"] == "done"
    assert fake_replicate.predictions_created == 2
    first, second = fake_replicate.predictions.values()
    assert first.canceled_at is not None
    assert [c.path for c in fake_replicate.calls("predictions.cancel")] == [
        f"/v1/predictions/{first.id}/cancel"
    ]
    assert row["prediction_id"] == second.id
    assert await h.balance(UID) == 0


async def test_an_aborted_prediction_is_replaced_not_refunded(
    harness: Harness, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    """`aborted` (terminated before it ran, so never billed) was unknown to the SDK's model: the
    poll failed to parse and was retried until the budget ran out. Now a new prediction is made."""
    fake_replicate.script("predictions.create", Fault.prediction_aborted())
    h = await harness()
    gen_id = await gen.start_generation(h, UID)
    await h.settle()

    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"]) == ("done", False)
    first, second = fake_replicate.predictions.values()
    assert first.status(first.created + 3600) == "aborted"
    assert row["prediction_id"] == second.id
    assert fake_replicate.calls("predictions.cancel") == []
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID)
    assert fake_replicate.violations == []


async def _created(fake: FakeReplicate, n: int) -> bool:
    return fake.predictions_created >= n


async def test_a_prediction_past_its_budget_is_canceled(
    harness: Harness, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script("predictions.create", Fault.never_finishes())
    h = await harness(pipeline=PipelineConfig(poll_interval=0.02, animate_budget=0.6))
    await h.make_video(UID)
    row = await gen.generation(await gen.generation_id(UID))
    assert (row["status"], row["error_class"]) == ("failed", "timeout")
    assert await h.balance(UID) == 1
    (prediction,) = fake_replicate.predictions.values()
    assert [c.path for c in fake_replicate.calls("predictions.cancel")] == [
        f"/v1/predictions/{prediction.id}/cancel"
    ]
    assert prediction.canceled_at is not None
