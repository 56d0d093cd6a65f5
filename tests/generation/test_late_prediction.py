"""The animate budget runs out while `predictions.create` still waits for Replicate's answer.

Replicate bills a prediction from the moment it accepts it. A step that gives up while the create
is in flight must not leave the prediction that then appears running (and billing) for nobody, nor
let its id land on the row after the fallback's.
"""

from __future__ import annotations

from dataclasses import replace

from flick.fsm.conversation import State
from flick.storage import S3Storage
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.faults import Fault
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import HarnessFactory

UID = 7501


async def test_late_prediction_after_the_animate_budget_is_canceled_and_refunded_once(
    harness: HarnessFactory, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    # Replicate answers the create after 1.5 s; the step gives up after 0.5 s.
    fake_replicate.script("predictions.create", Fault.latency(1.5))
    h = await harness(pipeline=replace(gen.FAST, animate_budget=0.5))
    await h.make_video(UID)

    # The prediction Replicate created meanwhile was canceled, once.
    (prediction,) = fake_replicate.predictions.values()
    assert prediction.canceled_at is not None
    assert [c.path for c in fake_replicate.calls("predictions.cancel")] == [
        f"/v1/predictions/{prediction.id}/cancel"
    ]
    # The user is refunded once and told; the row keeps no prediction to poll.
    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert (row["status"], row["error_class"], row["refunded"]) == ("failed", "timeout", True)
    assert row["prediction_id"] is None
    assert await gen.ledger(UID) == [
        ("free", 1, 1, None),
        ("generation", -1, 0, gen_id),
        ("refund", 1, 1, gen_id),
    ]
    assert gen.t("en", "failed_timeout", n=1) in gen.sent_texts(h, UID)
    assert gen.videos(h, UID) == []
    assert await gen.session_state(UID) == State.IDLE.value


async def test_late_prediction_is_canceled_before_the_fallback_and_never_replaces_its_id(
    harness: HarnessFactory, gen: GenerationTools, storage: S3Storage, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script("predictions.create", Fault.latency(1.5))
    h = await harness(local_fallback=True, pipeline=replace(gen.FAST, animate_budget=0.5))
    await h.make_video(UID)

    (prediction,) = fake_replicate.predictions.values()
    assert prediction.canceled_at is not None
    assert len(fake_replicate.calls("predictions.cancel")) == 1
    # The fallback made the video, and its id is the one on the row.
    row = await gen.generation(await gen.generation_id(UID))
    assert row["status"] == "done" and row["refunded"] is False
    assert row["prediction_id"].startswith("local:")
    assert len(gen.videos(h, UID)) == 1
    assert (await storage.get(row["video_key"]))[4:8] == b"ftyp"
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]


async def test_late_prediction_after_the_create_grace_is_canceled_when_it_arrives(
    harness: HarnessFactory, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    """Still unanswered when the grace is over: the step ends (refunded, no fallback started
    that the late id would overwrite) and the prediction is canceled once it exists."""
    fake_replicate.script("predictions.create", Fault.latency(1.5))
    h = await harness(
        local_fallback=True,
        pipeline=replace(gen.FAST, animate_budget=0.3, create_grace=0.2),
    )
    await h.make_video(UID)
    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert (row["status"], row["error_class"], row["refunded"]) == ("failed", "timeout", True)
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation", "refund"]
    assert gen.videos(h, UID) == []

    async def canceled() -> bool:
        return any(p.canceled_at is not None for p in fake_replicate.predictions.values())

    await gen.wait_for(canceled, "the late prediction was canceled")

    async def forgotten() -> bool:
        return (await gen.generation(gen_id))["prediction_id"] is None

    await gen.wait_for(forgotten, "the late prediction's id was taken off the row")
    assert fake_replicate.predictions_created == 1
    assert len(fake_replicate.calls("predictions.cancel")) == 1
    assert await h.balance(UID) == 1
