"""Flick's pool hands a connection back without asyncpg's reset query (one round trip fewer
per statement), but never with a transaction still open on it."""

from __future__ import annotations

from flick.models import db


async def test_pool_release_rolls_back_a_transaction_left_open(database_url: str) -> None:
    async with db.connection_pool(database_url, 1, 1):
        async with db.pool().acquire() as conn:
            await conn.execute("CREATE TEMP TABLE left_open (x int)")
            await conn.execute("SET application_name = 'pool-release-test'")
        conn = await db.pool().acquire()
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("INSERT INTO left_open VALUES (1)")
        finally:
            await db.pool().release(conn)  # neither committed nor rolled back
        async with db.pool().acquire() as conn:  # the same connection: the pool holds one
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM left_open") == 0
            # What the skipped reset query would have undone stays: nothing on this pool sets it.
            assert await conn.fetchval("SHOW application_name") == "pool-release-test"
