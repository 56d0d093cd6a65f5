"""A lock connection that goes silent or is closed by a PostgreSQL restart.

A connection that goes silent (a network cut: no FIN, no RST, nothing) fences the active
gateway through its probe, within probe_every + probe_timeout.

The connection runs through the kit's DbProxy, which can stop passing bytes while keeping both
sockets open (`silence()`), which is what a cut cable looks like from either end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flick.embedded import EmbeddedPostgres
from flick.telegram.leadership import Leadership, lock_key
from flick.testing.children import GUARD
from flick.testing.db_outage import DbProxy
from flick.testing.services import postgres_dir


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[tuple[str, DbProxy]]:
    async with DbProxy.for_url(database_url) as running:
        yield running.url_for(database_url), running


async def test_a_silent_lock_connection_fences_the_active_gateway(
    proxy: tuple[str, DbProxy],
) -> None:
    url, through = proxy
    fenced: list[str] = []
    lead = Leadership(
        url, lock_key("flick-bot-silent"), probe_every=0.2, probe_timeout=0.5, grace=0
    )
    await lead.acquire()
    lead.on_lost(lambda: fenced.append("stopped taking updates"))
    try:
        assert lead.active
        through.silence()
        await asyncio.wait_for(lead.lost.wait(), GUARD)
        assert fenced == ["stopped taking updates"]
        assert not lead.active
        with pytest.raises(ConnectionError):
            await lead.execute("SELECT 1")
    finally:
        await lead.release()


async def test_a_postgresql_restart_fences_the_leader_and_one_elector_wins_afterwards(
    tmp_path: Path,
) -> None:
    """PostgreSQL of its own (the suite's must not restart under the other tests)."""
    with postgres_dir(tmp_path) as root:
        pg = EmbeddedPostgres(root / "pg")
        await pg.start()
        try:
            key = lock_key("flick-bot-restart")
            first = Leadership(pg.url, key, retry=0.2, grace=0)
            await first.acquire()
            # Another gateway's standby, and the first one standing again after its loss (as
            # flick run does), both waiting out the restart.
            others = [
                Leadership(pg.url, key, retry=0.2, grace=0, wait_for_database=True)
                for _ in range(2)
            ]
            await pg.stop()
            await asyncio.wait_for(first.lost.wait(), GUARD)  # fenced: its connection closed
            electing = [asyncio.create_task(o.acquire()) for o in others]
            await pg.start()
            done, pending = await asyncio.wait(
                electing, timeout=GUARD, return_when=asyncio.FIRST_COMPLETED
            )
            assert len(done) == 1 and len(pending) == 1
            assert [o.active for o in others].count(True) == 1
            for task in pending:
                task.cancel()
        finally:
            for lead in (first, *others):
                await lead.release()
            await pg.stop()
