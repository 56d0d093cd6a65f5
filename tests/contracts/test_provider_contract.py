"""What the provider ports promise, kept by every implementation: the local ones (Pillow and
ffmpeg, flick/pipeline/local.py) and the remote ones (the real OpenAI and Replicate SDKs inside
flick/pipeline/openai_images.py and replicate_video.py, against the spec-checking fakes).

Each remote fake fails its test at the end if a request broke the provider's spec.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from flick.errors import FinalError
from flick.pipeline.local import LocalImageProvider, LocalVideoProvider
from flick.ports import ImageProvider, Prediction, VideoProvider
from flick.testing import providers
from flick.testing.engine import make_jpeg
from flick.testing.harnesses import SMALL_VIDEO
from flick.testing.waits import until

PHOTOS = [make_jpeg("red", (64, 80)), make_jpeg("blue", (48, 64))]
INPUTS = {"prompt": "they hug and laugh", "resolution": "480p", "num_frames": 81}
FINAL = {"succeeded", "failed", "canceled", "aborted"}


@pytest.fixture(params=["local", "openai"])
async def image(request: pytest.FixtureRequest) -> AsyncIterator[ImageProvider]:
    if request.param == "local":
        yield LocalImageProvider(size=(96, 128))
        return
    async with providers.checked(providers.fake_openai()) as fake:
        remote = providers.openai_images(fake)
        yield remote
        await remote.aclose()


@dataclass
class Videos:
    provider: VideoProvider
    hold: Callable[[], None]  # predictions started from now on keep running until cancelled


@pytest.fixture(params=["local", "replicate"])
async def video(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Videos]:
    if request.param == "local":
        local = LocalVideoProvider(tmp_path / "videos", **SMALL_VIDEO)
        # A local render starts on the next turn of the event loop: a cancel right after
        # `start` stops it before it runs, with nothing to hold.
        yield Videos(local, lambda: None)
        await local.close()
        return
    async with providers.checked(providers.fake_replicate()) as fake:
        remote = providers.replicate_videos(fake)

        def hold() -> None:
            fake.run_time = 3600

        yield Videos(remote, hold)
        await remote.aclose()


async def final(provider: VideoProvider, prediction_id: str) -> Prediction:
    """Poll until the prediction ends, as the pipeline does."""
    seen: list[Prediction] = []

    async def ended() -> bool:
        seen.append(await provider.poll(prediction_id))
        return seen[-1].status in FINAL

    await until(ended, f"prediction {prediction_id} ended")
    return seen[-1]


async def test_compose_gives_a_picture_of_the_type_it_names(image: ImageProvider) -> None:
    assert isinstance(image.name, str) and image.name
    await image.check()
    composed = await image.compose(PHOTOS, "two people hugging, watercolour", "hug")
    with Image.open(io.BytesIO(composed.data)) as picture:
        assert Image.MIME[picture.format or ""] == composed.content_type
        assert picture.width > 0 and picture.height > 0
    assert all(isinstance(key, str) for key in composed.cost)  # what it cost, by name


async def test_a_photo_that_is_no_picture_is_a_final_bad_photo(image: ImageProvider) -> None:
    with pytest.raises(FinalError) as refused:
        await image.compose([PHOTOS[0], b"%PDF-1.4 not a photo" * 20], "hug", "hug")
    assert refused.value.user_reason == "bad_photo"


async def test_a_started_prediction_succeeds_with_an_mp4(video: Videos) -> None:
    provider = video.provider
    assert isinstance(provider.name, str) and provider.name
    await provider.check()
    prediction_id = await provider.start(make_jpeg("red"), "image/jpeg", INPUTS)
    done = await final(provider, prediction_id)
    assert (done.id, done.status, done.error) == (prediction_id, "succeeded", None)
    output = b"".join([chunk async for chunk in provider.open_output(done)])
    assert output[4:8] == b"ftyp"
    assert (await provider.poll(prediction_id)).status == "succeeded"  # and stays so


async def test_a_cancelled_prediction_ends_cancelled(video: Videos) -> None:
    video.hold()
    provider = video.provider
    prediction_id = await provider.start(make_jpeg("blue"), "image/jpeg", INPUTS)
    await provider.cancel(prediction_id)
    assert (await final(provider, prediction_id)).status == "canceled"
    await provider.cancel(prediction_id)  # a second cancel is no error


async def test_nothing_is_adopted_for_an_input_never_sent(video: Videos) -> None:
    provider = video.provider
    asked = datetime.now(UTC)
    await final(provider, await provider.start(make_jpeg("red"), "image/jpeg", INPUTS))
    other = make_jpeg("green")
    assert await provider.find_accepted(other, "image/jpeg", INPUTS, since=asked) is None
