"""DbProxy, the fault campaign's database outage, against the suite's real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from flick.testing.db_outage import DbProxy, upstream_of

# What a client sees when its database vanishes: a reset socket, or asyncpg's word for it.
GONE = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[DbProxy]:
    """A running proxy; afterwards, no task of its left and nothing the loop had to report
    (such as a callback failing on a cancelled connection task)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    before = asyncio.all_tasks()
    try:
        async with DbProxy.for_url(database_url) as running:
            yield running
        for _ in range(3):  # let the aborted transports' callbacks run
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    leaked = [t for t in asyncio.all_tasks() - before if not t.done()]
    leaked = [t for t in leaked if t is not asyncio.current_task()]
    assert not leaked, f"the proxy left tasks running: {leaked}"
    assert not reported, f"the event loop reported: {[c.get('message') for c in reported]}"


async def connect(proxy: DbProxy, database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(proxy.url_for(database_url), timeout=5)


async def test_queries_go_through_the_proxy(proxy: DbProxy, database_url: str) -> None:
    conn = await connect(proxy, database_url)
    try:
        assert await conn.fetchval("SELECT 40 + $1::int", 2) == 42
        # Bigger than one read of the pump, both ways.
        big = "x" * 300_000
        assert await conn.fetchval("SELECT length($1::text)", big) == len(big)
        assert len(await conn.fetchval("SELECT repeat('y', 500000)")) == 500_000
        assert proxy.open_connections == 1
    finally:
        await conn.close()
    assert proxy.stats.accepted == 1


async def test_a_cut_kills_open_connections_and_refuses_new_ones(
    proxy: DbProxy, database_url: str
) -> None:
    conn = await connect(proxy, database_url)
    try:
        await proxy.cut()
        assert proxy.is_down and proxy.open_connections == 0
        with pytest.raises(GONE):
            await conn.fetchval("SELECT 1")
        with pytest.raises(GONE):
            await connect(proxy, database_url)
        assert proxy.stats.cut == 1 and proxy.stats.refused >= 1
    finally:
        await conn.close()
    proxy.restore()
    again = await connect(proxy, database_url)
    try:
        assert await again.fetchval("SELECT 1") == 1
    finally:
        await again.close()


async def test_a_query_in_flight_fails_at_the_cut(proxy: DbProxy, database_url: str) -> None:
    conn = await connect(proxy, database_url)
    try:
        query = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.2)  # the query has reached the server
        await proxy.cut()
        with pytest.raises(GONE):
            await asyncio.wait_for(query, 10)
    finally:
        conn.terminate()
        proxy.restore()


async def test_outage_block_then_a_pool_recovers(proxy: DbProxy, database_url: str) -> None:
    pool = await asyncpg.create_pool(proxy.url_for(database_url), min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SELECT 1") == 1
        async with proxy.outage(0.3):
            with pytest.raises(GONE):
                await pool.fetchval("SELECT 1")
        assert not proxy.is_down
        # The pool's dead connection is replaced on the next acquire.
        assert await pool.fetchval("SELECT 2") == 2
        assert proxy.stats.outages == 1
    finally:
        await pool.close()


async def test_the_server_is_untouched_by_an_outage(proxy: DbProxy, database_url: str) -> None:
    direct = await asyncpg.connect(database_url)
    try:
        async with proxy.outage(0.1):
            assert await direct.fetchval("SELECT 1") == 1
    finally:
        await direct.close()


def test_url_for_swaps_only_the_server() -> None:
    proxy = DbProxy("10.0.0.9", 6543)
    proxy._port = 40001  # not started: only the URL is under test
    url = "postgresql://flick:s3cret@db.example:6543/flick?sslmode=disable"
    assert proxy.url_for(url) == "postgresql://flick:s3cret@127.0.0.1:40001/flick?sslmode=disable"
    socket_url = "postgresql://postgres:@/flick_test?host=/tmp/pg-sock"
    assert proxy.url_for(socket_url) == "postgresql://postgres:@127.0.0.1:40001/flick_test"
    assert upstream_of(socket_url) == ("/tmp/pg-sock", 5432)
    assert upstream_of(url) == ("db.example", 6543)
    assert upstream_of("postgresql://u@127.0.0.1/x?port=5433") == ("127.0.0.1", 5433)
