"""`bot`: the whole bot as in production, minus the network (flick.testing.bot)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flick.storage import S3Storage
from flick.testing.bot import Bot, running_bot

__all__ = ["Bot", "running_bot"]  # for tests that still import them from here


@pytest.fixture
async def bot(database_url: str, storage: S3Storage, tmp_path: Path) -> AsyncIterator[Bot]:
    async with running_bot(database_url, storage, tmp_path) as bot:
        yield bot
