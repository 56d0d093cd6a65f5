"""The whole engine behind an EngineHarness, on the session's database and a fresh bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from flick.storage import S3Storage
from flick.testing.engine import EngineHarness


@pytest.fixture
async def harness(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[EngineHarness]]]:
    async with AsyncExitStack() as stack:

        async def start(**settings: Any) -> EngineHarness:
            h = EngineHarness(database_url, storage, tmp_path, **settings)
            return await stack.enter_async_context(h)

        yield start
