"""Shared fixtures: one real PostgreSQL and one real S3 (SeaweedFS) for the whole test session.

`database_url` is an empty database (FLICK_TEST_DATABASE_URL's server when set, else embedded);
`seaweed` is the running EmbeddedSeaweed; `storage` is an S3Storage on a fresh bucket per test.
Helpers for more fixtures live in `flick.testing.services`, not here (pytest's importlib mode).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from flick.embedded import EmbeddedSeaweed
from flick.pipeline.local import LocalVideoProvider
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness
from flick.testing.services import make_storage, test_postgres, test_seaweed


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with test_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
async def seaweed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedSeaweed]:
    async with test_seaweed(tmp_path_factory.mktemp("seaweed")) as running:
        yield running


@pytest.fixture
async def storage(seaweed: EmbeddedSeaweed) -> AsyncIterator[S3Storage]:
    async with make_storage(seaweed) as fresh:
        yield fresh


HarnessFactory = Callable[..., Awaitable[EngineHarness]]


@pytest_asyncio.fixture
async def harness(database_url: str, storage: Any, tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    """`h = await harness(**options)`: a running engine (EngineHarness), stopped after the test."""
    numbers = itertools.count()
    # SeaweedFS allocates a new bucket's volumes on its first write: do it while the engine starts.
    warm = asyncio.ensure_future(storage.put("warm-up", b"warm", "text/plain"))
    async with AsyncExitStack() as stack:

        async def make(**kwargs: Any) -> EngineHarness:
            data_dir = kwargs.pop("data_dir", None) or tmp_path / f"engine{next(numbers)}"
            if "video" not in kwargs:  # real ffmpeg renders, only short and small
                kwargs["video"] = LocalVideoProvider(
                    data_dir / "videos", duration=0.25, fps=4, width=64
                )
            url = kwargs.pop("database_url", database_url)  # e.g. through a DbProxy
            h = EngineHarness(url, storage, data_dir, **kwargs)
            entered, _ = await asyncio.gather(stack.enter_async_context(h), warm)
            return entered

        try:
            yield make
        finally:
            await asyncio.gather(warm, return_exceptions=True)
