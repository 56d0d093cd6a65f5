"""Fakes of OpenAI and Replicate, and the real providers pointed at them (flick.testing.providers).

Every fake checks, when its test ends, that no request broke the provider's spec (a test that sends
an invalid request on purpose asserts on `fake.violations` and then clears it), and that every
fault the test scripted was triggered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.testing import providers
from flick.testing.fake_openai import FakeOpenAI, sample_photo
from flick.testing.fake_replicate import FakeReplicate

MAX_VIDEO_BYTES = 256 * 1024

ImagesFactory = Callable[..., OpenAIImageProvider]
VideosFactory = Callable[..., ReplicateVideoProvider]


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with providers.checked(providers.fake_openai()) as fake:
        yield fake


@pytest.fixture
async def fake_replicate() -> AsyncIterator[FakeReplicate]:
    async with providers.checked(providers.fake_replicate()) as fake:
        yield fake


@pytest.fixture
async def make_images(fake_openai: FakeOpenAI) -> AsyncIterator[ImagesFactory]:
    """OpenAIImageProvider on the fake; keyword arguments override the test defaults."""
    made: list[OpenAIImageProvider] = []

    def make(**overrides: Any) -> OpenAIImageProvider:
        made.append(providers.openai_images(fake_openai, **overrides))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
async def make_videos(fake_replicate: FakeReplicate) -> AsyncIterator[VideosFactory]:
    """ReplicateVideoProvider on the fake; keyword arguments override the test defaults."""
    made: list[ReplicateVideoProvider] = []

    def make(**overrides: Any) -> ReplicateVideoProvider:
        options = {"max_bytes": MAX_VIDEO_BYTES} | overrides
        made.append(providers.replicate_videos(fake_replicate, **options))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
def images(make_images: ImagesFactory) -> OpenAIImageProvider:
    return make_images()


@pytest.fixture
def videos(make_videos: VideosFactory) -> ReplicateVideoProvider:
    return make_videos()


@pytest.fixture
def photos() -> list[bytes]:
    return [sample_photo((220, 90, 90)), sample_photo((90, 90, 220), size=(48, 64))]
