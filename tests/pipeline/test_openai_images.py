"""OpenAIImageProvider with the real openai SDK against the spec-checking fake."""

from __future__ import annotations

import email.utils
import io
import socket
import time
from collections.abc import Callable

import pytest
from loguru import logger
from PIL import Image

from flick.errors import FinalError, TransientError
from flick.pipeline.classify import retry_after
from flick.pipeline.openai_images import OpenAIImageProvider
from flick.testing.fake_openai import FakeOpenAI, Fault

ImagesFactory = Callable[..., OpenAIImageProvider]

PROMPT = "The two people from the photos hugging on a beach at sunset, photorealistic."


async def test_compose_sends_both_photos_in_one_request(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    composed = await images.compose(photos, PROMPT, "hug")

    with Image.open(io.BytesIO(composed.data)) as picture:
        assert picture.format == "PNG"
        assert picture.width * 3 == picture.height * 2  # 1024x1536, scaled down by the fake
    assert composed.content_type == "image/png"
    [edit] = fake_openai.calls("images.edit")
    assert [(p.filename, p.content_type) for p in edit.files["image[]"]] == [
        ("photo1.jpg", "image/jpeg"),
        ("photo2.jpg", "image/jpeg"),
    ]
    assert [p.data for p in edit.files["image[]"]] == photos
    assert edit.form == {
        "model": ["gpt-image-1"],
        "prompt": [PROMPT],
        "quality": ["medium"],
        "size": ["1024x1536"],
        "input_fidelity": ["high"],
        "n": ["1"],
    }
    assert composed.cost["model"] == "gpt-image-1"
    assert composed.cost["total_tokens"] == (
        composed.cost["input_tokens"] + composed.cost["output_tokens"]
    )
    assert composed.cost["input_tokens_details"]["image_tokens"] > 0


async def test_rate_limit_is_transient_with_retry_after_and_not_retried_by_the_sdk(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    fake_openai.script("images.edit", Fault.status(429, retry_after=7, code="rate_limit_exceeded"))

    with pytest.raises(TransientError) as caught:
        await images.compose(photos, PROMPT, "hug")

    assert caught.value.kind == "rate_limited"
    assert caught.value.retry_after == 7.0
    assert len(fake_openai.calls("images.edit")) == 1  # max_retries=0: one attempt, no sleeping


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_transient(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes], status: int
) -> None:
    fake_openai.script("images.edit", Fault.status(status))

    with pytest.raises(TransientError) as caught:
        await images.compose(photos, PROMPT, "hug")

    assert caught.value.kind == "server_error"
    assert caught.value.retry_after is None
    assert len(fake_openai.calls("images.edit")) == 1


async def test_moderation_block_is_final_and_tells_the_user(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    fake_openai.script("images.edit", Fault.moderation_blocked())

    with pytest.raises(FinalError) as caught:
        await images.compose(photos, PROMPT, "kiss")

    assert (caught.value.kind, caught.value.user_reason) == ("moderation_blocked", "moderation")


async def test_reply_without_image_is_final_no_image(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    fake_openai.script("images.edit", Fault.malformed("no_image"))

    with pytest.raises(FinalError) as caught:
        await images.compose(photos, PROMPT, "hug")

    assert (caught.value.kind, caught.value.user_reason) == ("no_image", "no_image")


async def test_garbled_reply_is_transient(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    fake_openai.script("images.edit", Fault.malformed("json"))

    with pytest.raises(TransientError) as caught:
        await images.compose(photos, PROMPT, "hug")

    assert caught.value.kind == "malformed_reply"


@pytest.mark.parametrize(
    ("status", "kind"), [(400, "invalid_request"), (401, "auth"), (403, "auth"), (404, "not_found")]
)
async def test_other_client_errors_are_final(
    images: OpenAIImageProvider,
    fake_openai: FakeOpenAI,
    photos: list[bytes],
    status: int,
    kind: str,
) -> None:
    fake_openai.script("images.edit", Fault.status(status, code="whatever"))

    with pytest.raises(FinalError) as caught:
        await images.compose(photos, PROMPT, "hug")

    assert caught.value.kind == kind


async def test_unreadable_photo_reported_by_openai_is_a_bad_photo(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    truncated = photos[0][:40]  # starts like a JPEG, so it is sent; the fake cannot decode it

    with pytest.raises(FinalError) as caught:
        await images.compose([truncated, photos[1]], PROMPT, "hug")

    assert (caught.value.kind, caught.value.user_reason) == ("invalid_input", "bad_photo")


async def test_photo_in_an_unknown_format_is_refused_without_a_call(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    with pytest.raises(FinalError) as caught:
        await images.compose([photos[0], b"GIF89a not supported"], PROMPT, "hug")

    assert caught.value.user_reason == "bad_photo"
    assert fake_openai.requests == []


async def test_slow_reply_times_out_as_transient(
    make_images: ImagesFactory, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    fake_openai.script("images.edit", Fault.latency(30.0))
    started = time.monotonic()

    with pytest.raises(TransientError) as caught:
        await make_images(timeout=0.3).compose(photos, PROMPT, "hug")

    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 30.0  # gave up before OpenAI answered
    (edit,) = fake_openai.calls("images.edit")
    assert edit.status == 0  # no reply was ever sent: the client left first


async def test_dropped_connection_is_transient(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    fake_openai.script("images.edit", Fault.disconnect())

    with pytest.raises(TransientError) as caught:
        await images.compose(photos, PROMPT, "hug")

    assert caught.value.kind == "connection"


async def test_unreachable_server_is_transient(
    make_images: ImagesFactory, photos: list[bytes]
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(TransientError) as caught:
        await make_images(base_url=f"http://127.0.0.1:{port}/v1").compose(photos, PROMPT, "hug")

    assert caught.value.kind == "connection"


async def test_check_retrieves_the_model(
    images: OpenAIImageProvider, fake_openai: FakeOpenAI
) -> None:
    await images.check()

    [call] = fake_openai.requests
    assert (call.op, call.path) == ("models.retrieve", "/v1/models/gpt-image-1")


async def test_check_with_a_wrong_key_is_final_auth(make_images: ImagesFactory) -> None:
    with pytest.raises(FinalError) as caught:
        await make_images(api_key="sk-wrong").check()

    assert caught.value.kind == "auth"


async def test_check_with_an_unknown_model_is_final_not_found(
    make_images: ImagesFactory,
) -> None:
    with pytest.raises(FinalError) as caught:
        await make_images(model="gpt-nope").check()

    assert caught.value.kind == "not_found"


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after": "0.5"}) == 0.5
    assert retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after({"Retry-After": later}) or 0) <= 30


async def test_logs_never_show_the_key(
    make_images: ImagesFactory, fake_openai: FakeOpenAI, photos: list[bytes]
) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        await make_images().compose(photos, PROMPT, "hug")
        with pytest.raises(FinalError):
            await make_images(api_key="sk-wrong-secret").compose(photos, PROMPT, "hug")
    finally:
        logger.remove(sink)

    assert len(lines) == 2
    assert not [line for line in lines if "sk-" in line]
