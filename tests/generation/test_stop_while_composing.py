"""A graceful stop while the image model composes: the paid image is not thrown away.

`images.edit` takes tens of seconds in production and is paid. A stop lets a generation inside
that call finish it and save the combined image within the drain time, then parks it; the next
start animates the saved image. Generations waiting for the limiter stop at once.
"""

from __future__ import annotations

import asyncio

from flick.storage import S3Storage
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import EngineFactory

UID = 7601
QUEUED = 7602


async def test_paid_compose_is_kept_across_a_graceful_stop_and_paid_once(
    engine: EngineFactory,
    gen: GenerationTools,
    storage: S3Storage,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fake_openai.latency = 1.0  # the image call in flight when the stop comes
    await storage.put("warm-up", b"warm", "text/plain")
    async with engine(ai_concurrency=1) as first:
        gen_id = await gen.start_generation(first, UID)

        async def composing() -> bool:
            return fake_openai.in_flight == 1

        await gen.wait_for(composing, "the image request is in flight")
        queued_id = await gen.start_generation(first, QUEUED)  # waits for the one AI slot
        await first.app.supervisor.stop(drain_seconds=8)
        assert first.app.supervisor.generations_running == 0

    # The composing one finished its paid step and was parked after it, image saved.
    parked = await gen.generation(gen_id)
    assert parked["combined_key"] is not None and parked["refunded"] is False
    assert parked["status"] == "animating" and parked["video_key"] is None
    assert (await storage.get(parked["combined_key"])).startswith(b"\xff\xd8\xff")
    # The queued one was stopped at once: it never reached the image model.
    assert len(fake_openai.calls("images.edit")) == 1
    queued = await gen.generation(queued_id)
    assert queued["combined_key"] is None and queued["refunded"] is False

    fake_openai.latency = 0
    async with engine(fresh=False) as second:

        async def delivered() -> bool:
            return len(gen.videos(second, UID)) == 1 and len(gen.videos(second, QUEUED)) == 1

        await gen.wait_for(delivered, "both resumed generations were delivered")
        await second.settle()
        row = await gen.generation(gen_id)
        assert row["status"] == "done" and row["combined_key"] == parked["combined_key"]
        # One image each: the stopped compose was reused, not paid again.
        assert len(fake_openai.calls("images.edit")) == 2
        assert fake_replicate.predictions_created == 2
        assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]
        assert [r[0] for r in await gen.ledger(QUEUED)] == ["free", "generation"]


async def test_stop_shorter_than_the_compose_returns_at_its_deadline(
    engine: EngineFactory, gen: GenerationTools, storage: S3Storage, fake_openai: FakeOpenAI
) -> None:
    fake_openai.latency = 3600  # an image call far longer than the drain time
    await storage.put("warm-up", b"warm", "text/plain")
    async with engine() as first:
        gen_id = await gen.start_generation(first, UID)

        async def composing() -> bool:
            return fake_openai.in_flight == 1

        await gen.wait_for(composing, "the image request is in flight")
        # The guard only turns a hang (a stop that waited for the call) into a failure.
        async with asyncio.timeout(60):
            await first.app.supervisor.stop(drain_seconds=0.5)
        assert first.app.supervisor.generations_running == 0
    # Cancelled at the deadline: parked where a restart composes it again, nothing refunded.
    row = await gen.generation(gen_id)
    assert (row["status"], row["combined_key"], row["refunded"]) == ("composing", None, False)
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]
