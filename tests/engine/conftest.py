"""Fixtures for the engine tests: `tools` (flick.testing.engine_tools: reading the conversation
back, making events, the provider doubles) and `video_factory` (a CountingVideo over a
LocalVideoProvider the test owns). `harness` comes from tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flick.testing.engine_tools import EngineTools
from flick.testing.harnesses import VideoFactory, counting_videos


@pytest.fixture
async def video_factory(tmp_path: Path) -> AsyncIterator[VideoFactory]:
    """`video_factory(meter=None, **options)`: small, short renders unless told otherwise."""
    async with counting_videos(tmp_path) as make:
        yield make


@pytest.fixture
def tools() -> EngineTools:
    return EngineTools()
