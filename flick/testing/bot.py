"""The whole bot as in production, minus the network: the `bot` fixture of tests/e2e.

Offline Telegram → kurigram → adapter → engine (real PostgreSQL and S3) → outbox → kurigram →
offline Telegram, with the real OpenAI and Replicate SDKs talking to the spec-validating fakes.

    async with running_bot(database_url, storage, tmp_path) as bot:
        alice = bot.tg.user(1001, "Alice")
        await bot.make_video(alice)
        assert bot.tg.sent(raw.functions.messages.SendMedia, alice.id)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flick.pipeline.runner import PipelineConfig
from flick.ports import Storage
from flick.telegram.gateway import TelegramGateway
from flick.testing.engine import EngineHarness, make_jpeg
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.providers import (
    checked,
    fake_openai,
    fake_replicate,
    openai_images,
    replicate_videos,
)
from flick.testing.telegram import Incoming, OfflineTelegram


@dataclass
class Bot:
    tg: OfflineTelegram
    h: EngineHarness
    openai: FakeOpenAI
    replicate: FakeReplicate

    async def push(self, *incoming: Incoming | Iterable[Incoming]) -> None:
        """Push raw updates through kurigram and wait until the engine has handled them all."""
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
    storage: Storage,
    tmp_path: Path,
    deliver_budget: float = 10,
    **settings: Any,
) -> AsyncIterator[Bot]:
    """The bot, running; on a clean exit the fakes saw no spec violation and used every fault."""
    async with (
        checked(fake_openai()) as openai,
        checked(fake_replicate(start_delay=0.02, run_time=0.05, require_schemas=True)) as replicate,
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
            image=openai_images(openai),
            video=replicate_videos(replicate),
            outbox=gateway.outbox,  # type: ignore[arg-type]  # a real outbox, not a recording one
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
        tg.assert_faults_used()
