"""Generations end to end: the whole engine (real PostgreSQL, real S3) with the real openai and
replicate SDKs (inside our providers) talking to the spec-checking fakes.

- `fake_openai`, `fake_replicate`: the fakes; each test ends by checking that no request broke
  the provider's spec and that every scripted fault was triggered (flick.testing.providers).
- `engine(**kw)`: an EngineHarness (not started) on the fakes; `harness(**kw)`: the same, started
  and stopped when the test ends (flick.testing.harnesses).
- `gen`: reads through the test's own pool `sql` (flick.testing.generation_tools).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from flick.storage import S3Storage
from flick.testing import providers
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import EngineFactory, HarnessFactory, engines_on_fakes, started


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with providers.checked(providers.fake_openai()) as fake:
        yield fake


@pytest.fixture
async def fake_replicate() -> AsyncIterator[FakeReplicate]:
    # every model's input is checked against its schema in flick/model_inputs
    fake = providers.fake_replicate(models={providers.VIDEO_MODEL}, require_schemas=True)
    async with providers.checked(fake) as fake:
        yield fake


@pytest.fixture
def engine(
    database_url: str,
    storage: S3Storage,
    tmp_path: Path,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> EngineFactory:
    return engines_on_fakes(database_url, storage, tmp_path, fake_openai, fake_replicate)


@pytest.fixture
async def harness(engine: EngineFactory, storage: S3Storage) -> AsyncIterator[HarnessFactory]:
    async with started(storage, engine) as make:
        yield make


@pytest.fixture(autouse=True)
async def sql(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The tests' own connections: they read the database between two engines, too."""
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as own:
        yield own


@pytest.fixture
def gen(sql: asyncpg.Pool) -> GenerationTools:
    return GenerationTools(sql)
