"""A direct route (the model animates both photos, nothing composed) stopped in each of its steps,
then resumed by a new engine on the same database and bucket: one prediction, one charge.

The compose_animate route's steps have theirs: test_resume.py (composing, animating),
test_lost_prediction.py (a create whose answer was lost), test_delivery.py (delivering).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from flick.media import VideoMeta
from flick.models import generation_jobs
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.ports import Keyboard
from flick.testing.direct_style import KLING, styles_file, tier
from flick.testing.engine import EngineHarness, make_jpeg
from flick.testing.fake_replicate import Fault
from flick.testing.memory import RecordingOutbox

UID = 7801
OTHER = 7802

HD = tier("hd", "HD", credits=2, usd=0.9, duration=10)


class HeldOutbox(RecordingOutbox):
    """Telegram takes the video only once `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.uploading = asyncio.Event()
        self.release = asyncio.Event()

    async def send_video(
        self,
        chat_id: int,
        storage_key: str,
        caption: str,
        keyboard: Keyboard | None = None,
        file_id: str | None = None,
        *,
        local_path: Path | None = None,
        meta: VideoMeta | None = None,
    ) -> str:
        self.uploading.set()
        await self.release.wait()
        return await super().send_video(
            chat_id, storage_key, caption, keyboard, file_id, local_path=local_path, meta=meta
        )


def styles(tmp_path: Path) -> Path:
    return styles_file(tmp_path / "styles.toml", HD, base="")


async def start(h: EngineHarness, gen: Any, uid: int = UID) -> int:
    await h.command(uid, "create")
    await h.settle(generations=False)
    if any((d or "") == "consent" for _, d in h.last_keyboard(uid).buttons()):
        await h.press(uid, "consent", h.last_keyboard(uid).message_id)
        await h.settle(generations=False)
    await h.pick_style(uid, "together")  # one tier: no quality step
    await h.settle(generations=False)
    await h.photo(uid, make_jpeg("red"))
    await h.photo(uid, make_jpeg("blue"))
    await h.settle(generations=False)
    gen_id = await gen.generation_id(uid)
    assert gen_id is not None
    return int(gen_id)


async def resumed_and_paid_once(
    engine: Any, gen: Any, fake_openai: Any, fake_replicate: Any, gen_id: int, **kw: Any
) -> dict[str, Any]:
    """A second engine delivers the parked generation; one prediction, two credits, once."""
    async with engine(fresh=False, **kw) as second:

        async def delivered() -> bool:
            return bool(gen.videos(second, UID))

        await gen.wait_for(delivered, "the resumed direct generation was delivered")
        await second.settle()
        row: dict[str, Any] = await gen.generation(gen_id)
        assert (row["status"], row["refunded"], row["route"]) == ("done", False, "direct")
        assert (row["charged"], row["cost_usd"], row["video_model"]) == (2, 0.9, KLING)
        assert len(gen.videos(second, UID)) == 1
        assert fake_replicate.predictions_created == 1
        assert fake_openai.calls("images.edit") == []
        assert await gen.ledger(UID) == [("free", 5, 5, None), ("generation", -2, 3, gen_id)]
        return row


async def test_a_direct_generation_stopped_while_animating_polls_the_same_prediction(
    engine: Any, gen: Any, storage: Any, fake_openai: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    fake_replicate.models |= {KLING}
    fake_replicate.run_time = 1.5  # still rendering when the first engine stops
    await storage.put("warm-up", b"warm", "text/plain")
    path = styles(tmp_path)
    async with engine(styles_file=path, free_credits=5) as first:
        gen_id = await start(first, gen)
        pid = await gen.wait_for_prediction(gen_id)
    parked = await gen.generation(gen_id)
    # Never composed: animating from the photos, its prediction saved, nothing refunded.
    assert (parked["status"], parked["combined_key"], parked["refunded"]) == (
        "animating", None, False
    )  # fmt: skip
    assert fake_replicate.calls("predictions.cancel") == []

    row = await resumed_and_paid_once(
        engine, gen, fake_openai, fake_replicate, gen_id, styles_file=path, free_credits=5
    )
    assert row["prediction_id"] == pid


async def test_a_direct_prediction_accepted_before_a_kill_is_adopted_not_paid_twice(
    engine: Any, gen: Any, storage: Any, fake_openai: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    """Replicate accepted the create, Flick died before it heard the id: the next start finds
    it by its model, prompt and both photos (as reference images) and adopts it."""
    fake_replicate.models |= {KLING}
    fake_replicate.script("predictions.create", Fault.lost_reply(hold=30))
    await storage.put("warm-up", b"warm", "text/plain")
    path = styles(tmp_path)
    quick = ReplicateVideoProvider(
        api_token=gen.REPLICATE_TOKEN,
        model=gen.VIDEO_MODEL,
        base_url=fake_replicate.base_url,
        timeout=1.5,
    )
    async with engine(styles_file=path, free_credits=5, video=quick) as first:
        gen_id = await start(first, gen)

        async def accepted() -> bool:
            return bool(fake_replicate.predictions_created == 1)

        await gen.wait_for(accepted, "Replicate accepted the prediction")
    parked = await gen.generation(gen_id)
    assert parked["prediction_id"] is None and parked["prediction_requested_at"] is not None
    assert parked["video_model"] == KLING  # saved before the create: looked for there
    (orphan,) = fake_replicate.predictions

    row = await resumed_and_paid_once(
        engine, gen, fake_openai, fake_replicate, gen_id, styles_file=path, free_credits=5
    )
    assert row["prediction_id"] == orphan
    assert len(fake_replicate.calls("predictions.list")) >= 1
    assert len(fake_replicate.calls("predictions.create")) == 1


async def test_a_direct_generation_stopped_while_delivering_is_sent_from_storage(
    engine: Any, gen: Any, storage: Any, fake_openai: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    fake_replicate.models |= {KLING}
    await storage.put("warm-up", b"warm", "text/plain")
    path = styles(tmp_path)
    held = HeldOutbox()
    async with engine(styles_file=path, free_credits=5, outbox=held) as first:
        gen_id = await start(first, gen)
        await asyncio.wait_for(held.uploading.wait(), 20)

        async def in_storage() -> bool:
            return (await gen.generation(gen_id))["video_key"] is not None

        await gen.wait_for(in_storage, "the video reached S3")
    parked = await gen.generation(gen_id)
    assert (parked["status"], parked["refunded"]) == ("delivering", False)

    row = await resumed_and_paid_once(
        engine, gen, fake_openai, fake_replicate, gen_id, styles_file=path, free_credits=5
    )
    assert row["video_key"] == parked["video_key"]


async def test_a_direct_generation_stopped_before_its_prediction_creates_one_once(
    engine: Any, gen: Any, storage: Any, fake_openai: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    """Stopped while waiting in the queue for the AI seat (another user's video held the only
    one): queued, nothing asked of Replicate yet. The next start asks once."""
    fake_replicate.models |= {KLING}
    fake_replicate.run_time = 3600  # the other user's prediction holds the slot
    await storage.put("warm-up", b"warm", "text/plain")
    path = styles(tmp_path)
    # The other user's video holds the seat through the test, however slow the machine.
    patient = replace(gen.FAST, animate_budget=300.0)
    async with engine(
        styles_file=path, free_credits=5, ai_concurrency=1, pipeline=patient
    ) as first:
        other = await start(first, gen, OTHER)
        await gen.wait_for_prediction(other)
        gen_id = await start(first, gen)

        async def waiting() -> bool:
            return await generation_jobs.queued_in_order() == [gen_id]

        await gen.wait_for(waiting, "the second generation waits for the AI seat")
    parked = await gen.generation(gen_id)
    assert (parked["status"], parked["prediction_requested_at"]) == ("queued", None)
    fake_replicate.run_time = 0.1
    for prediction in fake_replicate.predictions.values():
        prediction.run_time = 0.1  # the other user's finishes too
    async with engine(fresh=False, styles_file=path, free_credits=5) as second:

        async def delivered() -> bool:
            return bool(gen.videos(second, UID))

        await gen.wait_for(delivered, "the resumed direct generation was delivered")
        await second.settle()
        row = await gen.generation(gen_id)
        assert (row["status"], row["charged"], row["refunded"]) == ("done", 2, False)
        mine = [p for p in fake_replicate.predictions.values() if p.id == row["prediction_id"]]
        assert len(mine) == 1 and fake_replicate.predictions_created == 2  # one each
        assert await gen.ledger(UID) == [("free", 5, 5, None), ("generation", -2, 3, gen_id)]
