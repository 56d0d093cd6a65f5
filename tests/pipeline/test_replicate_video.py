"""ReplicateVideoProvider with the real replicate SDK against the spec-checking fake."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

import pytest
from loguru import logger

from flick.errors import FinalError, TransientError
from flick.pipeline.classify import classify_prediction
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.ports import Prediction
from flick.testing.fake_openai import sample_photo
from flick.testing.fake_replicate import FakeReplicate, Fault, sample_mp4

VideosFactory = Callable[..., ReplicateVideoProvider]
STYLE_INPUTS = {"prompt": "they hug and laugh", "resolution": "480p", "num_frames": 81}
IMAGE = sample_photo(size=(32, 48), fmt="PNG")


async def wait_until_done(videos: ReplicateVideoProvider, prediction_id: str) -> Prediction:
    for _ in range(200):
        prediction = await videos.poll(prediction_id)
        if prediction.status in ("succeeded", "failed", "canceled"):
            return prediction
        await asyncio.sleep(0.02)
    raise AssertionError("the prediction never finished")


async def download(videos: ReplicateVideoProvider, prediction: Prediction) -> bytes:
    return b"".join([chunk async for chunk in videos.open_output(prediction)])


async def test_start_poll_and_stream_the_video(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    prediction_id = await videos.start(IMAGE, "image/png", STYLE_INPUTS)

    prediction = await wait_until_done(videos, prediction_id)
    assert prediction.status == "succeeded"
    assert prediction.output_url is not None
    assert prediction.predict_time == pytest.approx(0.1, abs=0.05)
    assert classify_prediction(prediction) is None
    video = await download(videos, prediction)
    assert video[4:8] == b"ftyp"
    assert video == sample_mp4()

    [create] = fake_replicate.calls("predictions.create")
    assert create.path == "/v1/models/wan-video/wan-2.2-i2v-fast/predictions"
    sent = create.json["input"]
    assert {key: sent[key] for key in STYLE_INPUTS} == STYLE_INPUTS
    prefix = "data:image/png;base64,"
    assert sent["image"].startswith(prefix)  # inline, never a link Replicate would have to fetch
    assert base64.b64decode(sent["image"][len(prefix) :]) == IMAGE
    assert fake_replicate.predictions_created == 1
    [output] = fake_replicate.calls("output")
    assert output.headers.get("Authorization") == "<redacted>"  # sent to Replicate's own host


async def test_failed_prediction_is_final(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script("predictions.create", Fault.prediction_fails("CUDA out of memory"))

    prediction = await wait_until_done(videos, await videos.start(IMAGE, "image/png", STYLE_INPUTS))

    assert (prediction.status, prediction.error) == ("failed", "CUDA out of memory")
    error = classify_prediction(prediction)
    assert error is not None
    assert error.kind == "prediction_failed"
    with pytest.raises(FinalError):
        await download(videos, prediction)


async def test_nsfw_refusal_is_moderation(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script("predictions.create", Fault.prediction_fails("NSFW content detected"))

    prediction = await wait_until_done(videos, await videos.start(IMAGE, "image/png", STYLE_INPUTS))

    error = classify_prediction(prediction)
    assert error is not None
    assert (error.kind, error.user_reason) == ("moderation_blocked", "moderation")


async def test_cancel_stops_a_prediction_that_never_finishes(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script("predictions.create", Fault.never_finishes())
    prediction_id = await videos.start(IMAGE, "image/png", STYLE_INPUTS)
    await asyncio.sleep(0.2)
    assert (await videos.poll(prediction_id)).status == "processing"
    assert fake_replicate.running() == 1

    await videos.cancel(prediction_id)

    prediction = await videos.poll(prediction_id)
    assert prediction.status == "canceled"
    assert fake_replicate.running() == 0
    error = classify_prediction(prediction)
    assert error is not None
    assert error.kind == "prediction_canceled"


@pytest.mark.parametrize("fault", [Fault.output_404(), Fault.output_html()])
async def test_missing_or_non_video_output_is_final(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate, fault: Fault
) -> None:
    prediction = await wait_until_done(videos, await videos.start(IMAGE, "image/png", STYLE_INPUTS))
    fake_replicate.script("output", fault)

    with pytest.raises(FinalError) as caught:
        await download(videos, prediction)

    assert (caught.value.kind, caught.value.user_reason) == ("bad_output", "bad_output")


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_video_stops_the_download(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate, chunked: bool
) -> None:
    prediction = await wait_until_done(videos, await videos.start(IMAGE, "image/png", STYLE_INPUTS))
    fake_replicate.script("output", Fault.output_large(videos.max_bytes * 4, chunked=chunked))
    received = 0

    with pytest.raises(FinalError) as caught:
        async for chunk in videos.open_output(prediction):
            received += len(chunk)

    assert caught.value.kind == "video_too_large"
    assert received <= videos.max_bytes  # never more than the limit passed on


async def test_output_server_error_is_transient(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    prediction = await wait_until_done(videos, await videos.start(IMAGE, "image/png", STYLE_INPUTS))
    fake_replicate.script("output", Fault.status(503, retry_after=2))

    with pytest.raises(TransientError) as caught:
        await download(videos, prediction)

    assert caught.value.retry_after == 2.0


@pytest.mark.parametrize("status", [429, 503])
async def test_throttled_poll_is_one_request_with_retry_after(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate, status: int
) -> None:
    prediction_id = await videos.start(IMAGE, "image/png", STYLE_INPUTS)
    fake_replicate.script("predictions.get", Fault.status(status, retry_after=30))
    started = time.monotonic()

    with pytest.raises(TransientError) as caught:
        await videos.poll(prediction_id)

    assert caught.value.retry_after == 30.0
    # The SDK's own RetryTransport would have slept the 30 s and asked again: not in play.
    assert len(fake_replicate.calls("predictions.get")) == 1
    assert time.monotonic() - started < 30.0  # it did not wait out Retry-After


async def test_throttled_create_is_transient(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script("predictions.create", Fault.status(500), Fault.status(429))

    for kind in ("server_error", "rate_limited"):
        with pytest.raises(TransientError) as caught:
            await videos.start(IMAGE, "image/png", STYLE_INPUTS)
        assert caught.value.kind == kind
    assert fake_replicate.predictions_created == 0


async def test_invalid_input_is_final(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.script("predictions.create", Fault.status(422, message="input.fps: too big"))

    with pytest.raises(FinalError) as caught:
        await videos.start(IMAGE, "image/png", {"fps": 1000})

    assert caught.value.kind == "invalid_request"


async def test_slow_poll_times_out_as_transient(
    make_videos: VideosFactory, fake_replicate: FakeReplicate
) -> None:
    prediction_id = await make_videos().start(IMAGE, "image/png", STYLE_INPUTS)
    fake_replicate.script("predictions.get", Fault.latency(30.0))

    with pytest.raises(TransientError) as caught:
        # Only the slow call has the short timeout: a busy machine may take 0.3 s for any call.
        await make_videos(timeout=0.3).poll(prediction_id)

    assert caught.value.kind == "timeout"


async def test_check_reads_the_account(
    videos: ReplicateVideoProvider, fake_replicate: FakeReplicate
) -> None:
    await videos.check()

    assert [call.path for call in fake_replicate.requests] == ["/v1/account"]


async def test_wrong_token_is_final_auth(make_videos: VideosFactory) -> None:
    videos = make_videos(api_token="r8_wrong")

    for call in (videos.check(), videos.start(IMAGE, "image/png", STYLE_INPUTS)):
        with pytest.raises(FinalError) as caught:
            await call
        assert caught.value.kind == "auth"


def test_a_version_reference_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="owner/name"):
        ReplicateVideoProvider("r8_x", model="owner/name:0123abcd")


async def test_logs_never_show_the_token(
    make_videos: VideosFactory, fake_replicate: FakeReplicate
) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        videos = make_videos()
        prediction = await wait_until_done(
            videos, await videos.start(IMAGE, "image/png", STYLE_INPUTS)
        )
        await download(videos, prediction)
        with pytest.raises(FinalError):
            await make_videos(api_token="r8_wrong-secret").check()
    finally:
        logger.remove(sink)

    assert lines
    assert not [line for line in lines if "r8_" in line]
