"""Shared fixtures: one real PostgreSQL and one real S3 (SeaweedFS) per test worker (pytest-xdist).

`database_url` is an empty database (FLICK_TEST_DATABASE_URL's server when set, else embedded);
`seaweed` is the running EmbeddedSeaweed; `storage` is an S3Storage on a fresh bucket per test;
`harness(**options)` starts an engine with the local providers (flick.testing.harnesses).
The kit lives in `flick/testing`; fixtures here only wire it (pytest's importlib mode).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flick.embedded import EmbeddedSeaweed
from flick.storage import S3Storage
from flick.testing.harnesses import HarnessFactory, local_engines, started
from flick.testing.services import make_storage, test_postgres, test_seaweed

MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker per core, but at most MAX_WORKERS. Each worker runs its own embedded
    PostgreSQL and SeaweedFS, and past four the suite is bound by its longest tests anyway."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


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


@pytest.fixture
async def harness(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> AsyncIterator[HarnessFactory]:
    """`h = await harness(**options)`: a running engine (EngineHarness), stopped after the test."""
    async with started(storage, local_engines(database_url, storage, tmp_path)) as make:
        yield make
