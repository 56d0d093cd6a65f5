"""A restart in the middle of a generation: the clean stop parks it (no refund), the next start
polls the same prediction and delivers, and nothing is paid twice."""

from __future__ import annotations

from flick.fsm.conversation import State
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import EngineFactory

UID = 7301


async def test_a_restarted_flick_resumes_the_prediction_and_pays_once(
    engine: EngineFactory,
    gen: GenerationTools,
    storage: S3Storage,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.run_time = 1.5  # long enough to stop Flick while it renders
    await storage.put("warm-up", b"warm", "text/plain")

    async with engine() as first:
        gen_id = await gen.start_generation(first, UID)
        pid = await gen.wait_for_prediction(gen_id)
        status_id = (await gen.generation(gen_id))["status_message_id"]
    # A clean stop parks the generation where it was: not refunded, not canceled at Replicate.
    parked = await gen.generation(gen_id)
    assert parked["status"] == "animating" and parked["refunded"] is False
    assert parked["prediction_id"] == pid and parked["combined_key"] is not None
    assert parked["video_key"] is None
    assert fake_replicate.calls("predictions.cancel") == []
    assert fake_replicate.predictions[pid].canceled_at is None
    assert gen.videos(first, UID) == []
    assert await gen.session_state(UID) == State.PROCESSING.value

    # A new process on the same database and bucket, with new clients on the same providers.
    async with engine(fresh=False) as second:
        await gen.wait_for(lambda: _delivered(second, UID), "the resumed generation was delivered")
        await second.settle()

        sent = gen.videos(second, UID)
        assert len(sent) == 1
        row = await gen.generation(gen_id)
        assert row["status"] == "done" and row["refunded"] is False
        assert row["prediction_id"] == pid
        assert sent[0].extra["key"] == row["video_key"]
        assert (await storage.get(row["video_key"]))[4:8] == b"ftyp"
        # The status message of the first run is the one edited to the end.
        assert row["status_message_id"] == status_id
        done = gen.status_texts(second)["status_done"]
        assert [s.extra["edits"] for s in second.outbox.to(UID) if s.text == done] == [status_id]
        # Each provider was paid once; one credit spent, nothing refunded.
        assert fake_replicate.predictions_created == 1
        assert len(fake_openai.calls("images.edit")) == 1
        assert await second.balance(UID) == 0
        assert await gen.ledger(UID) == [("free", 1, 1, None), ("generation", -1, 0, gen_id)]
        assert gen.actor_state(second, UID) is State.IDLE
        assert await gen.session_state(UID) == State.IDLE.value


async def _delivered(h: EngineHarness, uid: int) -> bool:
    return any(s.method == "send_video" for s in h.outbox.to(uid))


async def test_a_generation_parked_before_its_prediction_is_resumed(
    engine: EngineFactory,
    gen: GenerationTools,
    storage: S3Storage,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    """Stopped while composing: the next start composes and animates, for one credit."""
    fake_openai.latency = 3600  # the first engine stops while the image request hangs
    await storage.put("warm-up", b"warm", "text/plain")
    async with engine() as first:
        gen_id = await gen.start_generation(first, UID)

        async def composing() -> bool:
            return fake_openai.in_flight == 1

        await gen.wait_for(composing, "the image request is in flight")
        # A stop waits for a paid image call within its drain time: here a shorter one than
        # the call (and than its budget, which would end the generation as failed meanwhile).
        await first.app.supervisor.stop(drain_seconds=0.5)
    assert (await gen.generation(gen_id))["status"] == "composing"

    fake_openai.latency = 0
    async with engine(fresh=False) as second:
        await gen.wait_for(lambda: _delivered(second, UID), "the resumed generation delivered")
        await second.settle()
        row = await gen.generation(gen_id)
        assert row["status"] == "done"
        assert fake_replicate.predictions_created == 1
        assert await second.balance(UID) == 0
        assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]
