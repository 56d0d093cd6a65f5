"""Generations end to end: the whole engine (real PostgreSQL, real S3) with the real openai and
replicate SDKs (inside our providers) talking to the spec-checking fakes.

- `fake_openai`, `fake_replicate`: the fakes; each test ends by checking that no request broke
  the provider's spec and that every scripted fault was triggered (flick.testing.providers).
- `engine(**kw)`: an EngineHarness (not started) on the fakes; `harness(**kw)`: the same, started
  and stopped when the test ends (flick.testing.harnesses).
- `gen`: reads through the test's own pool `sql` (flick.testing.generation_tools).
- `workers`: `flick worker` children on the test's database, bucket and fakes, beating every
  HEARTBEAT seconds (flick.testing.workers, flick.testing.worker_checks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from flick.embedded import EmbeddedSeaweed
from flick.storage import S3Storage
from flick.testing import providers
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.flick_child import ChildConfig
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import EngineFactory, HarnessFactory, engines_on_fakes, started
from flick.testing.worker_checks import HEARTBEAT
from flick.testing.workers import Workers


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


@pytest.fixture
async def workers(
    database_url: str,
    seaweed: EmbeddedSeaweed,
    storage: S3Storage,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
) -> AsyncIterator[Workers]:
    base = ChildConfig(
        socket="",
        database_url=database_url,
        s3_endpoint=storage.endpoint,
        s3_access_key=seaweed.access_key,
        s3_secret_key=seaweed.secret_key,
        s3_bucket=storage.bucket,
        openai_url=fake_openai.base_url,
        replicate_url=fake_replicate.base_url,
        data_dir=str(tmp_path / "workers"),
    )
    running = Workers(base, WORK_HEARTBEAT_SECONDS=str(HEARTBEAT))
    try:
        yield running
    finally:
        await running.close()
        print(running.lines())  # shown when the test fails
