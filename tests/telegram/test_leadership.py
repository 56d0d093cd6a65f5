"""One active gateway, standbys ready: the election on the real test PostgreSQL, with real
processes where "dies" matters (flick.testing.elector, SIGKILLed).

Time bounds below are failure guards only: each test waits on a condition (a line a child
prints, an event), never on a sleep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from loguru import logger
from pydantic import SecretStr
from pyrogram.storage import UpdateState

from flick.models import db, migrations
from flick.runtime import serve
from flick.settings import Settings
from flick.telegram.client import session_name
from flick.telegram.leadership import Leadership, lock_key
from flick.telegram.session_seal import Seal
from flick.telegram.session_store import DatabaseSessionStorage
from flick.testing.children import GUARD, Child
from flick.testing.elector import lock_holders

if TYPE_CHECKING:
    from loguru import Message

ACTIVE = "this process is the active gateway"
STANDBY = "standby, waiting for the active gateway"


@pytest.fixture
async def migrated(database_url: str) -> AsyncIterator[str]:
    async with db.connection_pool(database_url, 1, 2):
        await migrations.apply()
        yield database_url


@asynccontextmanager
async def electors(url: str, session: str, count: int) -> AsyncIterator[list[Child]]:
    started = await asyncio.gather(
        *(Child.module("flick.testing.elector", url, session) for _ in range(count))
    )
    try:
        yield list(started)
    finally:
        for child in started:
            await child.kill()


async def test_electors_started_at_the_same_instant_elect_exactly_one(migrated: str) -> None:
    session = f"flick-bot-{uuid.uuid4().hex[:8]}"
    async with electors(migrated, session, 3) as children:
        said = [child.lines[await child.said(ACTIVE, STANDBY)] for child in children]
        assert said.count(ACTIVE) == 1, said
        assert len(await lock_holders(migrated, lock_key(session))) == 1


async def test_sigkilled_active_gateway_the_standby_takes_over_from_the_saved_update_state(
    migrated: str,
) -> None:
    session = f"flick-bot-{uuid.uuid4().hex[:8]}"
    async with electors(migrated, session, 1) as (first,):
        assert first.lines[await first.said("resumed")] == "resumed 0"
        # … and took pts 150 without saving it:
        assert first.lines[await first.said("saved")] == "saved 100"
        async with electors(migrated, session, 1) as (standby,):
            await standby.said(STANDBY)
            killed = time.monotonic()
            await first.kill()
            await standby.said(ACTIVE)
            takeover = time.monotonic() - killed
            # Telegram is asked again from the last saved pts: nothing received but unsaved is lost.
            assert standby.lines[await standby.said("resumed")] == "resumed 100"
            print(f"takeover after SIGKILL: {takeover:.2f} s")
            assert takeover < 10.0


async def test_lock_connection_terminated_the_active_one_fences_before_another_serves(
    migrated: str,
) -> None:
    session = f"flick-bot-{uuid.uuid4().hex[:8]}"
    key = lock_key(session)
    order: list[str] = []
    first = Leadership(migrated, key, retry=0.1, grace=0.5)
    await first.acquire()
    first.on_lost(lambda: order.append("first fenced"))
    storage = DatabaseSessionStorage(session, lambda: first, Seal("1:t", session))
    await storage.open()
    second = Leadership(migrated, key, retry=0.1, grace=0.5)

    async def elect_second() -> None:
        await second.acquire()
        order.append("second active")

    electing = asyncio.create_task(elect_second())
    try:
        (holder,) = await lock_holders(migrated, key)
        conn = await asyncpg.connect(migrated)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", holder)
        finally:
            await conn.close()
        await asyncio.wait_for(electing, GUARD)
        assert order == ["first fenced", "second active"]
        assert not first.active and second.active
        # The old leader can no longer write the session: its update state is not saved.
        await storage.set_update_state(UpdateState(0, 500, 1, 1, 1))
        await storage.save()
        with pytest.raises(ConnectionError):
            await first.execute("SELECT 1")
        assert (
            await db.pool().fetchval(
                "SELECT count(*) FROM telegram_update_states WHERE session = $1", session
            )
            == 0
        )
    finally:
        electing.cancel()
        await first.release()
        await second.release()


async def test_flick_run_as_a_standby_waits_without_starting_the_engine_or_telegram(
    migrated: str, tmp_path: Path
) -> None:
    token = "7012345678:standby-test-token"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "var",
        api_id=12345,
        api_hash=SecretStr("c0ffee5eed0123456789abcdefabcdef"),
        bot_token=SecretStr(token),
        database_url=SecretStr(migrated),
        session_store="database",
    )
    lines: list[str] = []
    waiting = asyncio.Event()

    def sink(message: Message) -> None:
        lines.append(message.record["message"])
        if message.record["message"] == STANDBY:
            waiting.set()

    sink_id = logger.add(sink, level="INFO")
    stop = asyncio.Event()
    async with Leadership(migrated, lock_key(session_name(token)), grace=0) as active:
        running = asyncio.create_task(serve(settings, stop))
        try:
            await asyncio.wait_for(waiting.wait(), GUARD)
            assert active.active
            stop.set()
            await asyncio.wait_for(running, GUARD)  # a stop ends the wait
        finally:
            running.cancel()
            logger.remove(sink_id)
    # Neither the engine's database pool nor Telegram was touched while standing by.
    assert not [ln for ln in lines if ln.startswith(("database:", "connected to Telegram"))]
    assert not (tmp_path / "var" / f"{session_name(token)}.session").exists()
