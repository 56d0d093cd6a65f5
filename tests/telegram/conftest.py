"""Fixtures for the Telegram tests: an offline Telegram, the adapter on it, an outbox on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flick.events import Event, GroupMessage
from flick.telegram.adapter import TelegramAdapter
from flick.telegram.outbox import TelegramOutbox
from flick.testing.memory import MemoryStorage
from flick.testing.telegram import OfflineTelegram


@pytest.fixture
async def tg() -> AsyncIterator[OfflineTelegram]:
    async with OfflineTelegram() as offline:
        yield offline
        offline.assert_faults_used()  # a fail_next() nothing triggered: the test missed its point


@pytest.fixture
def events() -> list[Event | GroupMessage]:
    return []


@pytest.fixture
def adapter(tg: OfflineTelegram, events: list[Event | GroupMessage]) -> TelegramAdapter:
    async def collect(event: Event | GroupMessage) -> None:
        events.append(event)

    installed = TelegramAdapter(tg.client, collect)
    installed.install()
    return installed


@pytest.fixture
def memory_storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
async def outbox(
    tg: OfflineTelegram, memory_storage: MemoryStorage, tmp_path: Path
) -> AsyncIterator[TelegramOutbox]:
    async with TelegramOutbox(tg.client, memory_storage, tmp_dir=tmp_path / "spool") as running:
        yield running
