"""The whole bot as in production, minus the network: offline Telegram → kurigram → adapter →
engine (real PostgreSQL and S3) → outbox → kurigram → offline Telegram, with the real OpenAI and
Replicate SDKs talking to the spec-validating fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.pipeline.runner import PipelineConfig
from flick.storage import S3Storage
from flick.telegram.gateway import TelegramGateway
from flick.testing.engine import EngineHarness, make_jpeg
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.telegram import OfflineTelegram

KEY, TOKEN = "sk-e2e-not-real", "r8_e2e-not-real"


@dataclass
class Bot:
    tg: OfflineTelegram
    h: EngineHarness
    openai: FakeOpenAI
    replicate: FakeReplicate

    async def push(self, *incoming: Any) -> None:
        await self.tg.push(*incoming)
        await self.h.settle()

    async def make_video(self, user: Any, style: str = "kiss") -> None:
        """/create → consent → a style → an album of two photos, each step settled."""
        await self.push(self.tg.command(user, "create"))
        await self.push(self.tg.callback(user, "consent"))
        await self.push(self.tg.callback(user, f"style:{style}"))
        await self.push(*self.tg.album(user, [make_jpeg("red"), make_jpeg("blue")]))


@asynccontextmanager
async def running_bot(
    database_url: str,
    storage: S3Storage,
    tmp_path: Path,
    deliver_budget: float = 10,
    **settings: Any,
) -> AsyncIterator[Bot]:
    async with (
        FakeOpenAI(api_key=KEY, models={"gpt-image-1"}) as openai,
        FakeReplicate(
            api_token=TOKEN, start_delay=0.02, run_time=0.05, require_schemas=True
        ) as replicate,
        OfflineTelegram() as tg,
    ):
        engine: list[EngineHarness] = []

        async def dispatch(event: Any) -> None:
            await engine[0].app.dispatch(event)

        gateway = TelegramGateway(
            tg.client, dispatch, storage, tmp_dir=tmp_path / "spool", publish_commands=False
        )
        harness = EngineHarness(
            database_url,
            storage,
            tmp_path,
            image=OpenAIImageProvider(KEY, base_url=openai.base_url, timeout=5),
            video=ReplicateVideoProvider(TOKEN, base_url=replicate.base_url, timeout=5),
            outbox=gateway.outbox,  # type: ignore[arg-type]
            pipeline=PipelineConfig(
                poll_interval=0.02,
                compose_budget=10,
                animate_budget=10,
                deliver_budget=deliver_budget,
            ),
            **settings,
        )
        async with harness:
            engine.append(harness)
            async with gateway:
                yield Bot(tg, harness, openai, replicate)
        assert openai.violations == [] and replicate.violations == []
        for fake in (openai, replicate, tg):
            fake.assert_faults_used()


@pytest.fixture
async def bot(database_url: str, storage: S3Storage, tmp_path: Path) -> AsyncIterator[Bot]:
    async with running_bot(database_url, storage, tmp_path) as bot:
        yield bot
