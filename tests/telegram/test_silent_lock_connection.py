"""A lock connection that goes silent or is closed by a PostgreSQL restart.

A connection that goes silent (a network cut: no FIN, no RST, nothing) fences the active
gateway through its probe, within probe_every + probe_timeout.

The connection runs through a relay in the test that can stop passing bytes while keeping both
sockets open, which is what a cut cable looks like from either end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from flick.embedded import EmbeddedPostgres
from flick.telegram.leadership import Leadership, lock_key
from flick.testing.children import GUARD
from flick.testing.services import postgres_dir


class Relay:
    """TCP on 127.0.0.1 → the test PostgreSQL's unix socket; `cut()` stops all traffic."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self.flowing.wait()  # cut: hold the bytes, close nothing
            writer.write(data)
            await writer.drain()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self._writers += [writer, up_writer]
        for task in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
            t = asyncio.create_task(task)
            self._tasks.add(t)

    def cut(self) -> None:
        self.flowing.clear()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def relayed_url(database_url: str) -> AsyncIterator[tuple[str, Relay]]:
    parts = urlsplit(database_url)
    host = parse_qs(parts.query).get("host", [""])[0]
    if not host.startswith("/"):
        pytest.skip("the relay speaks to a unix-socket PostgreSQL (the embedded one)")
    relay = Relay(str(Path(host) / f".s.PGSQL.{parts.port or 5432}"))
    server = await asyncio.start_server(relay.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    user = parts.username or "postgres"
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}{parts.path}", relay
    finally:
        server.close()
        await relay.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_a_silent_lock_connection_fences_the_active_gateway(
    relayed_url: tuple[str, Relay],
) -> None:
    url, relay = relayed_url
    fenced: list[str] = []
    lead = Leadership(
        url, lock_key("flick-bot-silent"), probe_every=0.2, probe_timeout=0.5, grace=0
    )
    await lead.acquire()
    lead.on_lost(lambda: fenced.append("stopped taking updates"))
    try:
        assert lead.active
        relay.cut()
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
