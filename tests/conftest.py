"""Shared fixtures: one real PostgreSQL and one real S3 (SeaweedFS) for the whole test session.

`database_url` is an empty database (FLICK_TEST_DATABASE_URL's server when set, else embedded);
`seaweed` is the running EmbeddedSeaweed; `storage` is an S3Storage on a fresh bucket per test.
Helpers for more fixtures live in `flick.testing.services`, not here (pytest's importlib mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flick.embedded import EmbeddedSeaweed
from flick.storage import S3Storage
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
