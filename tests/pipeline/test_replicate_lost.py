"""ReplicateVideoProvider.find_accepted: finding, through `GET /v1/predictions`, a prediction
Replicate accepted whose answer never reached us, against the spec-checking fake."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image

from flick.errors import FinalError, TransientError
from flick.pipeline.imaging import with_comment
from flick.pipeline.local import LocalVideoProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.testing.fake_openai import sample_photo
from flick.testing.fake_replicate import FakeReplicate, Fault

VideosFactory = Callable[..., ReplicateVideoProvider]
INPUTS = {"prompt": "they hug and laugh", "resolution": "480p", "num_frames": 81}
IMAGE = sample_photo(size=(32, 48), fmt="JPEG")
OTHER = sample_photo((10, 200, 10), size=(32, 48), fmt="JPEG")


async def lost_create(videos: ReplicateVideoProvider, fake: FakeReplicate, image: bytes) -> str:
    """A create Replicate accepts and whose answer never comes: the id only the fake knows."""
    before = set(fake.predictions)
    fake.script("predictions.create", Fault.lost_reply())
    with pytest.raises(TransientError):
        await videos.start(image, "image/jpeg", INPUTS)
    (pid,) = set(fake.predictions) - before
    return pid


async def test_the_prediction_whose_answer_was_lost_is_found(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    asked = datetime.now(UTC)
    pid = await lost_create(videos, fake_replicate, IMAGE)

    assert await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=asked) == pid

    [listed] = fake_replicate.calls("predictions.list")
    assert listed.status == 200
    after = datetime.fromisoformat(listed.query["created_after"])
    before = datetime.fromisoformat(listed.query["created_before"])
    assert after <= asked - timedelta(seconds=30) and before >= asked + timedelta(minutes=1)
    assert fake_replicate.predictions[pid].canceled_at is None
    assert fake_replicate.violations == []  # the list request and the fake's pages fit the spec


async def test_nothing_accepted_finds_nothing(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    assert await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=datetime.now(UTC)) is None
    assert len(fake_replicate.calls("predictions.list")) == 1


async def test_it_reads_the_pages_of_the_window(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.page_size = 2
    asked = datetime.now(UTC)
    pid = await lost_create(videos, fake_replicate, IMAGE)
    others = [await videos.start(OTHER, "image/jpeg", INPUTS) for _ in range(5)]

    # Newest first, two a page: ours is on the third.
    assert await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=asked) == pid
    pages = fake_replicate.calls("predictions.list")
    assert len(pages) == 3
    assert [p.query.get("cursor") for p in pages] == [None, "2", "4"]
    assert all(fake_replicate.predictions[o].canceled_at is None for o in others)


async def test_other_inputs_and_canceled_or_old_predictions_are_not_adopted(
    videos: ReplicateVideoProvider, make_videos: VideosFactory, fake_replicate: FakeReplicate
) -> None:
    asked = datetime.now(UTC)
    # Someone else's: another image (another generation's mark on the same picture, too).
    await videos.start(OTHER, "image/jpeg", INPUTS)
    await videos.start(with_comment(IMAGE, "flick generation 2"), "image/jpeg", INPUTS)
    # Ours in image, not in prompt or model.
    await videos.start(IMAGE, "image/jpeg", {**INPUTS, "prompt": "they dance"})
    await make_videos(model="owner/other").start(IMAGE, "image/jpeg", INPUTS)
    # Ours, but canceled, or created long before the create we look for.
    canceled = await videos.start(IMAGE, "image/jpeg", INPUTS)
    await videos.cancel(canceled)
    old = await videos.start(IMAGE, "image/jpeg", INPUTS)
    fake_replicate.predictions[old].created_at -= timedelta(hours=1)
    untouched = {p.id: p.canceled_at for p in fake_replicate.predictions.values()}

    assert await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=asked) is None
    assert {p.id: p.canceled_at for p in fake_replicate.predictions.values()} == untouched


async def test_several_matches_adopt_one_and_cancel_the_others(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    # Still running when they are listed, however slow the machine: a finished duplicate is
    # left alone by design, and that made this test fail under load.
    fake_replicate.run_time = 3600
    asked = datetime.now(UTC)
    first = await lost_create(videos, fake_replicate, IMAGE)
    second = await lost_create(videos, fake_replicate, IMAGE)
    other = await videos.start(OTHER, "image/jpeg", INPUTS)

    assert await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=asked) == first
    assert fake_replicate.predictions[first].canceled_at is None
    assert fake_replicate.predictions[second].canceled_at is not None
    assert fake_replicate.predictions[other].canceled_at is None
    assert len(fake_replicate.calls("predictions.cancel")) == 1


async def test_a_failed_one_is_adopted_only_when_nothing_better_matches(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    """Paid for, and had its id been saved the step would have failed: no second payment."""
    asked = datetime.now(UTC)
    fake_replicate.script("predictions.create", Fault.prediction_fails())
    failed = await videos.start(IMAGE, "image/jpeg", INPUTS)
    for _ in range(200):
        if (await videos.poll(failed)).status == "failed":
            break
        await asyncio.sleep(0.02)
    assert await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=asked) == failed

    live = await lost_create(videos, fake_replicate, IMAGE)
    assert await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=asked) == live
    assert fake_replicate.calls("predictions.cancel") == []  # nothing to stop: it has ended


async def test_skipped_ids_are_not_adopted(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    """The pipeline skips what it gave up on itself (a prediction stuck `starting`)."""
    asked = datetime.now(UTC)
    given_up = await lost_create(videos, fake_replicate, IMAGE)

    found = await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=asked, skip={given_up})
    assert found is None
    assert fake_replicate.predictions[given_up].canceled_at is None


@pytest.mark.parametrize(
    ("fault", "error", "kind"),
    [
        (Fault.status(503), TransientError, "server_error"),
        (Fault.status(429, retry_after=0.5), TransientError, "rate_limited"),
        (Fault.malformed(), TransientError, "malformed_reply"),
        (Fault.disconnect(), TransientError, "connection"),
        (Fault.status(401), FinalError, "auth"),
    ],
)
async def test_list_errors_are_classified(
    videos: ReplicateVideoProvider,
    fake_replicate: FakeReplicate,
    fault: Fault,
    error: type[Exception],
    kind: str,
) -> None:
    fake_replicate.script("predictions.list", fault)
    with pytest.raises(error) as raised:
        await videos.find_accepted(IMAGE, "image/jpeg", INPUTS, since=datetime.now(UTC))
    assert getattr(raised.value, "kind", None) == kind


async def test_the_fake_refuses_a_date_that_is_not_one(fake_replicate: FakeReplicate) -> None:
    async with httpx.AsyncClient(base_url=fake_replicate.base_url) as client:
        bad = await client.get(
            "/v1/predictions",
            params={"created_after": "2025-01-01 10:00"},
            headers={"Authorization": "Bearer r8_test-not-a-real-token"},
        )
    assert bad.status_code == 400
    [violation] = fake_replicate.violations
    assert "created_after" in violation.problem
    fake_replicate.violations.clear()


def test_the_generation_mark_keeps_the_pixels() -> None:
    marked = with_comment(IMAGE, "flick generation 42")
    assert marked != IMAGE and marked.startswith(b"\xff\xd8")
    assert with_comment(IMAGE, "flick generation 42") == marked  # the same after a restart
    with Image.open(io.BytesIO(marked)) as img, Image.open(io.BytesIO(IMAGE)) as plain:
        assert img.info["comment"] == b"flick generation 42"
        assert img.tobytes() == plain.tobytes()
    assert with_comment(b"not a jpeg", "x") == b"not a jpeg"


async def test_the_local_provider_never_has_a_lost_prediction(tmp_path: Path) -> None:
    async with LocalVideoProvider(tmp_path) as local:
        found = await local.find_accepted(IMAGE, "image/jpeg", INPUTS, since=datetime.now(UTC))
    assert found is None
