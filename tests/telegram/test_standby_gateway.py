"""Two `flick run` processes on one database (flick.testing.gateway_child: runtime.serve with the
offline Telegram in place of the network; the real PostgreSQL and SeaweedFS of the tests).

Each process has its own offline Telegram, so what Telegram redelivers to the new gateway is not
played here (tests/telegram/test_session_takeover.py checks the pts it would ask from).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from flick.embedded import EmbeddedSeaweed
from flick.models import db, migrations
from flick.telegram.client import session_name
from flick.telegram.leadership import lock_key
from flick.testing.children import Child
from flick.testing.elector import lock_holders

RUNNING = "Flick is running"
ACTIVE = "this process is the active gateway"
STANDBY = "standby, waiting for the active gateway"
LOST = "lost the gateway lock"
HEALTH = "health and metrics on "


@pytest.fixture
def bot_token() -> str:
    """A bot of this test's own: another test's gateway, killed but not yet reaped by
    PostgreSQL, may still hold its own bot's lock in the same database."""
    return f"70{secrets.randbelow(10**8):08d}:standby-token"


@pytest.fixture
async def start_gateway(
    database_url: str, seaweed: EmbeddedSeaweed, tmp_path: Path, bot_token: str
) -> AsyncIterator[Callable[[str], Awaitable[Child]]]:
    async with db.connection_pool(database_url, 1, 2):
        await migrations.apply()
    bucket = f"standby-{secrets.token_hex(6)}"
    children: list[Child] = []

    async def start(name: str) -> Child:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "S3_ENDPOINT": seaweed.endpoint,
            "S3_ACCESS_KEY": seaweed.access_key,
            "S3_SECRET_KEY": seaweed.secret_key,
            "S3_BUCKET": bucket,
            "DATA_DIR": str(tmp_path / name),
            "API_ID": "12345",
            "API_HASH": "c0ffee5eed0123456789abcdefabcdef",
            "BOT_TOKEN": bot_token,
            "IMAGE_PROVIDER": "local",
            "VIDEO_PROVIDER": "local",
            "FACE_CHECK": "false",
            "SESSION_STORE": "database",
            # Port 0: each health server logs the port it got (`healthz` below reads it).
            "HEALTH_ADDRESS": "127.0.0.1:0",
        }
        child = await Child.module("flick.testing.gateway_child", env=env)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            await child.kill()
            print("\n".join(child.lines))  # shown when a test fails


def stamp(child: Child, index: int) -> float:
    """The time a gateway_child line was logged (its first word)."""
    return float(child.lines[index].split(" ", 1)[0])


async def healthz(child: Child, after: int = 0) -> tuple[int, dict[str, str]]:
    """GET /healthz of the health server the child started last (from line `after` on)."""
    started = await child.said(HEALTH, after=after)
    while (later := child.find(HEALTH, after=started + 1)) is not None:
        started = later
    url = child.lines[started].split(HEALTH, 1)[1].split()[0]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body: dict[str, str] = await response.json()
        return response.status, body


async def test_two_flick_runs_one_serves_and_the_standby_serves_after_a_sigkill(
    start_gateway: Callable[[str], Awaitable[Child]],
) -> None:
    first = await start_gateway("first")
    await first.said(RUNNING)
    second = await start_gateway("second")
    await second.said(STANDBY)
    assert second.find(RUNNING, "database:") is None  # nothing started while standing by
    killed = time.monotonic()
    await first.kill()
    await second.said(RUNNING)
    serving = time.monotonic() - killed
    print(f"standby serving {serving:.2f} s after the SIGKILL")
    assert serving < 10.0


async def test_a_fenced_flick_run_stops_before_the_standby_serves_and_becomes_the_standby(
    start_gateway: Callable[[str], Awaitable[Child]], database_url: str, bot_token: str
) -> None:
    first = await start_gateway("first")
    await first.said(RUNNING)
    second = await start_gateway("second")
    await second.said(STANDBY)
    # This bot's lock only: a previous test's bot may still hold its own in this database.
    (holder,) = await lock_holders(database_url, lock_key(session_name(bot_token)))
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", holder)
    finally:
        await conn.close()
    lost = await first.said(LOST)
    stopping = await first.said("stopping at once: no new updates", after=lost)
    serving = await second.said(RUNNING)
    # The old gateway stopped taking updates before the new one even held the lock.
    assert stamp(first, lost) < stamp(second, await second.said(ACTIVE))
    assert stamp(first, stopping) < stamp(second, serving)
    # It drained, and now waits as the standby.
    stopped = await first.said("Flick stopped", after=lost)
    await first.said(STANDBY, after=stopped)


async def test_a_waiting_standby_answers_healthz_200_standby_and_active_once_it_serves(
    start_gateway: Callable[[str], Awaitable[Child]],
) -> None:
    first = await start_gateway("first")
    await first.said(RUNNING)
    assert await healthz(first) == (
        200,
        {"database": "ok", "storage": "ok", "telegram": "ok", "gateway": "active"},
    )
    second = await start_gateway("second")
    standing_by = await second.said(STANDBY)
    # A standby is healthy (Docker's HEALTHCHECK must not count it as failed) and says so.
    assert await healthz(second) == (200, {"database": "ok", "gateway": "standby"})
    await first.kill()
    await second.said(RUNNING, after=standing_by)
    # Its health server as the active gateway started before "Flick is running" was logged.
    status, body = await healthz(second, after=standing_by)
    assert (status, body["gateway"], body["telegram"]) == (200, "active", "ok")
