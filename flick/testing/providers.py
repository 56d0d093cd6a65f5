"""The real providers pointed at the spec-checking fakes, with the keys the fakes accept.

`checked(fake)` runs a fake for one test and, when the test ends, fails it if any request broke
the provider's spec (a test that sends an invalid one on purpose clears `fake.violations`) or if a
scripted fault was never triggered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate

OPENAI_KEY = "sk-test-not-a-real-key"
REPLICATE_TOKEN = "r8_test-not-a-real-token"
IMAGE_MODEL = "gpt-image-1"
VIDEO_MODEL = "wan-video/wan-2.2-i2v-fast"

Fake = TypeVar("Fake", FakeOpenAI, FakeReplicate)


@asynccontextmanager
async def checked(fake: Fake) -> AsyncIterator[Fake]:
    """The fake, running; on a clean exit, no spec violation and every scripted fault used."""
    async with fake:
        yield fake
        assert [str(v) for v in fake.violations] == []
        fake.assert_faults_used()


def provider_env(openai_url: str, replicate_url: str) -> dict[str, str]:
    """The settings of a Flick process (`flick run`, `flick worker`) whose providers are the
    fakes at these addresses, as it reads them from its environment."""
    return {
        "IMAGE_PROVIDER": "openai",
        "IMAGE_MODEL": IMAGE_MODEL,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_url,
        "VIDEO_PROVIDER": "replicate",
        "VIDEO_MODEL": VIDEO_MODEL,
        "REPLICATE_API_TOKEN": REPLICATE_TOKEN,
        "REPLICATE_BASE_URL": replicate_url,
    }


def fake_openai() -> FakeOpenAI:
    return FakeOpenAI(api_key=OPENAI_KEY, models={IMAGE_MODEL})


def fake_replicate(**options: Any) -> FakeReplicate:
    """Predictions start after 30 ms and run 100 ms unless `options` say otherwise."""
    options = {"start_delay": 0.03, "run_time": 0.1} | options
    return FakeReplicate(api_token=REPLICATE_TOKEN, **options)


def openai_images(fake: FakeOpenAI, **overrides: Any) -> OpenAIImageProvider:
    options: dict[str, Any] = {"api_key": OPENAI_KEY, "base_url": fake.base_url, "timeout": 5.0}
    return OpenAIImageProvider(**(options | overrides))


def replicate_videos(fake: FakeReplicate, **overrides: Any) -> ReplicateVideoProvider:
    options: dict[str, Any] = {
        "api_token": REPLICATE_TOKEN,
        "model": VIDEO_MODEL,
        "base_url": fake.base_url,
        "timeout": 5.0,
    }
    return ReplicateVideoProvider(**(options | overrides))
