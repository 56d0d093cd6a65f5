"""LOCAL_FALLBACK (the offline providers stand in when a remote one is down) and the queue place
a waiting user is shown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from flick.fsm.conversation import State
from flick.models import generation_jobs
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.faults import Fault
from flick.testing.generation_tools import GenerationTools

Harness = Callable[..., Awaitable[EngineHarness]]  # the `harness` fixture
UID = 7401
OTHER = 7402


async def test_openai_down_falls_back_to_the_local_image_provider(
    harness: Harness,
    gen: GenerationTools,
    storage: S3Storage,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fake_openai.script_every("images.edit", Fault.status(500))  # OpenAI is down
    h = await harness(local_fallback=True, pipeline=replace(gen.FAST, compose_budget=0.8))
    await h.make_video(UID)

    row = await gen.generation(await gen.generation_id(UID))
    assert row["status"] == "done" and row["refunded"] is False
    assert len(gen.videos(h, UID)) == 1
    assert fake_openai.calls("images.edit")  # it was tried, and every attempt failed
    assert {c.status for c in fake_openai.calls("images.edit")} == {500}
    # The local picture went on to Replicate as usual.
    assert fake_replicate.predictions_created == 1
    assert row["prediction_id"] in fake_replicate.predictions
    assert (await storage.get(row["combined_key"])).startswith(b"\xff\xd8\xff")
    assert (await storage.get(row["video_key"]))[4:8] == b"ftyp"
    assert await h.balance(UID) == 0
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]
    assert await gen.session_state(UID) == State.IDLE.value


async def test_replicate_down_falls_back_to_the_local_video_provider(
    harness: Harness,
    gen: GenerationTools,
    storage: S3Storage,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.script_every("predictions.create", Fault.status(503))
    h = await harness(local_fallback=True, pipeline=replace(gen.FAST, animate_budget=0.8))
    await h.make_video(UID)

    row = await gen.generation(await gen.generation_id(UID))
    assert row["status"] == "done" and row["refunded"] is False
    assert len(gen.videos(h, UID)) == 1
    assert len(fake_openai.calls("images.edit")) == 1
    assert fake_replicate.predictions_created == 0
    assert {c.status for c in fake_replicate.calls("predictions.create")} == {503}
    assert row["prediction_id"].startswith("local:")
    assert (await storage.get(row["video_key"]))[4:8] == b"ftyp"
    assert await h.balance(UID) == 0
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]


async def test_without_fallback_a_provider_down_refunds(
    harness: Harness, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script_every("predictions.create", Fault.status(503))
    h = await harness(pipeline=replace(gen.FAST, animate_budget=0.8))
    await h.make_video(UID)
    row = await gen.generation(await gen.generation_id(UID))
    assert (row["status"], row["error_class"], row["refunded"]) == ("failed", "timeout", True)
    assert gen.t("en", "failed_timeout", n=1) in gen.sent_texts(h, UID)
    assert await h.balance(UID) == 1


async def test_a_waiting_user_sees_their_place_in_the_queue(
    harness: Harness, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.run_time = 60.0  # the first user's prediction holds the only seat a while
    h = await harness(ai_concurrency=1, pipeline=replace(gen.FAST, animate_budget=120.0))
    first = await gen.start_generation(h, UID)
    await gen.wait_for_prediction(first)  # UID is animating: the slot is taken

    second = await gen.start_generation(h, OTHER)
    queued = gen.t("en", "status_queued", style=gen.label(h), place=1)
    assert queued == f"⏳ {gen.label(h)}: you're number 1 in the queue…"

    async def told() -> bool:
        return any(s.text == queued for s in h.outbox.to(OTHER))

    await gen.wait_for(told, "the second user was told their place")
    # It waits in the queue for the one AI seat (pgqueuer's limit), not inside a runner.
    assert await generation_jobs.queued_in_order() == [second]
    for prediction in fake_replicate.predictions.values():
        prediction.run_time = 0.1
    fake_replicate.run_time = 0.1
    await h.settle()

    # The queued text was the status message itself, later edited as the video moved along.
    texts = gen.status_texts(h)
    status = gen.status_messages(h, OTHER)
    assert [(s.method, s.text) for s in status] == [
        ("send_text", queued),
        ("edit_text", texts["status_composing"]),
        ("edit_text", texts["status_animating"]),
        ("edit_text", texts["status_sending"]),
        ("edit_text", texts["status_done"]),
    ]
    assert {s.extra["edits"] for s in status[1:]} == {status[0].message_id}
    # The first user never waited; both got their videos.
    assert not [s for s in gen.status_messages(h, UID) if s.text == queued]
    for uid, gen_id in ((UID, first), (OTHER, second)):
        assert len(gen.videos(h, uid)) == 1
        assert (await gen.generation(gen_id))["status"] == "done"
    assert h.app.limiter.peak == 1
