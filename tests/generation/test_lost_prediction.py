"""A prediction Replicate accepted whose id never reached the generation's row (BENCHMARKS.md,
fault campaign, finding 2): a kill between the create and its answer, or an answer lost on the
way. Replicate bills it from the moment it accepts it; the resumed step finds it through
`GET /v1/predictions` and adopts it instead of paying for a second one."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from flick.pipeline.imaging import with_comment
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.storage import S3Storage
from flick.testing.fake_openai import sample_photo
from flick.testing.fake_replicate import FakeReplicate, Fault
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import EngineFactory, HarnessFactory

UID = 7401


def short_timeout_video(gen: Any, fake_replicate: Any) -> ReplicateVideoProvider:
    """The first engine's provider: a create that hangs ends soon, so the engine stops soon."""
    return ReplicateVideoProvider(
        api_token=gen.REPLICATE_TOKEN,
        model=gen.VIDEO_MODEL,
        base_url=fake_replicate.base_url,
        timeout=1.5,
    )


async def delivered(h: Any, uid: int = UID) -> bool:
    return any(s.method == "send_video" for s in h.outbox.to(uid))


async def paid_once(gen: Any, h: Any, gen_id: int) -> None:
    """One video sent, one credit spent, nothing refunded."""
    assert len(gen.videos(h, UID)) == 1
    row = await gen.generation(gen_id)
    assert row["status"] == "done" and row["refunded"] is False
    assert await h.balance(UID) == 0
    assert await gen.ledger(UID) == [("free", 1, 1, None), ("generation", -1, 0, gen_id)]


async def test_a_prediction_accepted_before_a_kill_is_adopted_not_paid_twice(
    engine: EngineFactory, gen: GenerationTools, storage: S3Storage, fake_replicate: FakeReplicate
) -> None:
    """The regression test: Replicate accepts the create, Flick dies before it hears the id."""
    await storage.put("warm-up", b"warm", "text/plain")
    # Accepted (and billed); the answer is held until the connection drops.
    fake_replicate.script("predictions.create", Fault.lost_reply(hold=30))
    async with engine(video=short_timeout_video(gen, fake_replicate)) as first:
        gen_id = await gen.start_generation(first, UID)

        async def accepted() -> bool:
            return fake_replicate.predictions_created == 1

        await gen.wait_for(accepted, "Replicate accepted the prediction")
    # What a kill in that window leaves: a prediction at Replicate, none in the row, only the
    # mark that one was asked for.
    parked = await gen.generation(gen_id)
    assert parked["prediction_id"] is None and parked["prediction_requested_at"] is not None
    assert parked["status"] == "animating" and parked["refunded"] is False
    (orphan,) = fake_replicate.predictions

    async with engine(fresh=False) as second:
        await gen.wait_for(lambda: delivered(second), "the resumed generation was delivered")
        await second.settle()

        # Adopted, polled and delivered: Replicate was paid once for this generation.
        assert fake_replicate.predictions_created == 1
        assert len(fake_replicate.calls("predictions.create")) == 1
        assert len(fake_replicate.calls("predictions.list")) == 1
        assert (await gen.generation(gen_id))["prediction_id"] == orphan
        assert fake_replicate.predictions[orphan].canceled_at is None
        await paid_once(gen, second, gen_id)


async def test_a_create_whose_answer_is_lost_is_adopted_by_the_retry(
    harness: HarnessFactory, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script("predictions.create", Fault.lost_reply())
    h = await harness()
    gen_id = await gen.start_generation(h, UID)
    await gen.wait_for(lambda: delivered(h), "the video was delivered")
    await h.settle()

    assert fake_replicate.predictions_created == 1
    (pid,) = fake_replicate.predictions
    assert (await gen.generation(gen_id))["prediction_id"] == pid
    assert len(fake_replicate.calls("predictions.list")) == 1
    await paid_once(gen, h, gen_id)


async def test_a_first_create_looks_for_nothing(
    harness: HarnessFactory, gen: GenerationTools, storage: S3Storage, fake_replicate: FakeReplicate
) -> None:
    h = await harness()
    gen_id = await gen.start_generation(h, UID)
    await gen.wait_for(lambda: delivered(h), "the video was delivered")
    await h.settle()

    assert fake_replicate.calls("predictions.list") == []  # the common case costs no request
    row = await gen.generation(gen_id)
    assert row["prediction_requested_at"] is not None
    (prediction,) = fake_replicate.predictions.values()
    # The image sent names the generation (a JPEG comment): the pixels are the combined image's.
    prefix = "data:image/jpeg;base64,"
    assert prediction.input["image"].startswith(prefix)
    sent = base64.b64decode(prediction.input["image"][len(prefix) :])
    combined = await storage.get(row["combined_key"])
    assert sent == with_comment(combined, f"flick generation {gen_id}") != combined
    with Image.open(io.BytesIO(sent)) as img, Image.open(io.BytesIO(combined)) as plain:
        assert img.tobytes() == plain.tobytes()
    await paid_once(gen, h, gen_id)


async def _park_before_replicate_accepts(
    engine: EngineFactory, gen: GenerationTools, storage: S3Storage, fake_replicate: FakeReplicate
) -> int:
    """A first engine stopped while its create hangs before Replicate accepted it."""
    await storage.put("warm-up", b"warm", "text/plain")
    fake_replicate.script("predictions.create", Fault.latency(30))
    async with engine(video=short_timeout_video(gen, fake_replicate)) as first:
        gen_id = await gen.start_generation(first, UID)

        async def asked() -> bool:
            return len(fake_replicate.calls("predictions.create")) == 1

        await gen.wait_for(asked, "the create reached Replicate")
    parked = await gen.generation(gen_id)
    assert parked["prediction_id"] is None and parked["prediction_requested_at"] is not None
    assert fake_replicate.predictions_created == 0
    return gen_id


async def test_a_resumed_create_that_was_never_accepted_creates_one(
    engine: EngineFactory, gen: GenerationTools, storage: S3Storage, fake_replicate: FakeReplicate
) -> None:
    gen_id = await _park_before_replicate_accepts(engine, gen, storage, fake_replicate)

    async with engine(fresh=False) as second:
        await gen.wait_for(lambda: delivered(second), "the resumed generation was delivered")
        await second.settle()

        assert len(fake_replicate.calls("predictions.list")) == 1
        assert fake_replicate.predictions_created == 1
        (pid,) = fake_replicate.predictions
        assert (await gen.generation(gen_id))["prediction_id"] == pid
        await paid_once(gen, second, gen_id)


async def test_someone_elses_prediction_in_the_window_is_not_adopted(
    engine: EngineFactory, gen: GenerationTools, storage: S3Storage, fake_replicate: FakeReplicate
) -> None:
    gen_id = await _park_before_replicate_accepts(engine, gen, storage, fake_replicate)
    combined = await storage.get((await gen.generation(gen_id))["combined_key"])
    [asked] = fake_replicate.calls("predictions.create")  # what Flick sent, besides the image
    style = {key: value for key, value in asked.json["input"].items() if key != "image"}
    # Other users' predictions, in the same minute, same model and prompt: another image, and
    # the same picture sent by another generation (or by a Flick that did not mark it).
    sdk = short_timeout_video(gen, fake_replicate)
    others = [
        await sdk.start(image, "image/jpeg", style)
        for image in (
            sample_photo((10, 200, 10)),
            with_comment(combined, "flick generation 999999"),
            combined,
        )
    ]
    await sdk.aclose()

    async with engine(fresh=False) as second:
        await gen.wait_for(lambda: delivered(second), "the resumed generation was delivered")
        await second.settle()

        assert fake_replicate.predictions_created == len(others) + 1
        pid = (await gen.generation(gen_id))["prediction_id"]
        assert pid not in others
        assert all(fake_replicate.predictions[o].canceled_at is None for o in others)
        await paid_once(gen, second, gen_id)


async def test_a_lost_prediction_that_failed_is_adopted_and_refunded_not_paid_again(
    engine: EngineFactory, gen: GenerationTools, storage: S3Storage, fake_replicate: FakeReplicate
) -> None:
    """Had its id been saved, the step would have failed: after the kill it fails the same way,
    and Replicate is not paid for a second try."""
    await storage.put("warm-up", b"warm", "text/plain")
    fake_replicate.script("predictions.create", Fault.lost_reply(hold=30))
    async with engine(video=short_timeout_video(gen, fake_replicate)) as first:
        gen_id = await gen.start_generation(first, UID)

        async def accepted() -> bool:
            return fake_replicate.predictions_created == 1

        await gen.wait_for(accepted, "Replicate accepted the prediction")
    (orphan,) = fake_replicate.predictions.values()
    orphan.fails = "CUDA error: out of memory"

    async with engine(fresh=False) as second:

        async def ended() -> bool:
            return bool((await gen.generation(gen_id))["refunded"])

        await gen.wait_for(ended, "the resumed generation was refunded")
        await second.settle()

        assert fake_replicate.predictions_created == 1
        row = await gen.generation(gen_id)
        assert (row["status"], row["error_class"]) == ("failed", "prediction_failed")
        assert row["prediction_id"] == orphan.id
        assert gen.videos(second, UID) == []
        assert await gen.ledger(UID) == [
            ("free", 1, 1, None),
            ("generation", -1, 0, gen_id),
            ("refund", 1, 1, gen_id),
        ]
