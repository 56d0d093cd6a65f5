"""What the tests of `flick worker` children share (tests/generation/test_workers.py and
test_worker_kills.py): the gateway's settings, the budgets, and the checks that a generation was
delivered once, charged once and paid for once.

The gateway is the engine harness with `gateway_generates=False`; the workers and the gateway
beat every HEARTBEAT seconds, so a SIGKILLed (or SIGSTOPped) worker's job is taken by another
once its heartbeat is that old.
"""

from __future__ import annotations

from typing import Any

from flick.testing.engine import EngineHarness
from flick.testing.fake_replicate import FakeReplicate, sample_mp4
from flick.testing.generation_tools import GenerationTools
from flick.testing.waits import until

HEARTBEAT = 3
#: A worker polls its prediction every 2 s (PipelineConfig's default) and looks for jobs every
#: 2 s (pgqueuer's dequeue timeout): a takeover within HEARTBEAT + MARGIN is no fluke.
MARGIN = 10.0
#: The gateway takes no generation step; its configuration (providers, models, styles) is the
#: workers' (their version must match the one it publishes).
GATEWAY: dict[str, Any] = {
    "gateway_generates": False,
    "work_heartbeat_seconds": HEARTBEAT,
    "image_provider": "openai",
    "video_provider": "replicate",
}
#: A worker's whole generation, its prediction polled at the default 2 s, plus the settle job.
GENERATION_LIMIT = 60.0


async def delivered(
    h: EngineHarness, gen: GenerationTools, gen_id: int, uid: int, limit: float = GENERATION_LIMIT
) -> None:
    """Wait until the gateway sent the generation's video (its row `done`)."""

    async def done() -> bool:
        return bool((await gen.generation(gen_id))["status"] == "done" and gen.videos(h, uid))

    await until(done, f"generation {gen_id} delivered", limit)
    await h.settle()


async def assert_paid_once_and_delivered_once(
    h: EngineHarness, gen: GenerationTools, gen_id: int, fake_replicate: FakeReplicate, uid: int
) -> None:
    """One video sent, from the worker's stored copy; one charge, no refund; one prediction."""
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"], row["charged"]) == ("done", False, 1)
    (video,) = gen.videos(h, uid)
    # Stored by the worker (the fake's MP4, whole), sent by the gateway from there.
    assert video.extra["key"] == row["video_key"]
    assert await h.storage.get(row["video_key"]) == sample_mp4()
    assert await gen.ledger(uid) == [("free", 1, 1, None), ("generation", -1, 0, gen_id)]
    assert await h.balance(uid) == 0
    # One prediction, created once, and the row's.
    assert fake_replicate.predictions_created == 1
    assert len(fake_replicate.calls("predictions.create")) == 1
    assert list(fake_replicate.predictions) == [row["prediction_id"]]


async def queue_empty(gen: GenerationTools) -> bool:
    """No job queued or running (pgqueuer writes a job's end in batches: wait for it)."""
    left = await gen.pool().fetchval(
        "SELECT count(*) FROM pgqueuer WHERE status IN ('queued', 'picked')"
    )
    return bool(left == 0)


async def jobs_logged(gen: GenerationTools, entrypoint: str) -> int:
    """The jobs of `entrypoint` ever queued in this test (pgqueuer logs each enqueue)."""
    return int(
        await gen.pool().fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = $1 AND status = 'queued'",
            entrypoint,
        )
    )
