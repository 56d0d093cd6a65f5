"""A new user is welcomed before their row is written (#19), and nothing that needs the row runs
before it lands (flick/actors/row_write.py).

To see the reply while the write has not landed, the test's own transaction inserts the same
user and leaves it open: PostgreSQL makes Flick's insert wait for it (the unique key), while
Flick's read of the user (no row visible yet) does not wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg

from flick.i18n import t
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.waits import until

Harness = Callable[..., Awaitable[EngineHarness]]
UID = 7401
WELCOME = t("en", "welcome", name=f"User{UID}", n=1, price=50)


@asynccontextmanager
async def row_held(database_url: str, balance: int = 0) -> AsyncIterator[asyncpg.Connection]:
    """The user's row inserted in an open transaction: commit or roll back inside the block."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO users (telegram_id, balance) VALUES ($1, $2)", UID, balance)
        yield conn
    finally:
        if not conn.is_closed():
            await conn.execute("ROLLBACK")  # (nothing to roll back once committed)
            await conn.close()


async def write_waiting(tools: EngineTools, other_than: int = 0) -> int:
    """The backend of Flick's write of the user's row, waiting for the test's transaction
    (one other than `other_than`: a terminated backend stays in pg_stat_activity a moment)."""
    found: list[int] = []

    async def waiting() -> bool:
        pid: int | None = await pool().fetchval(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%INSERT INTO users%' AND pid <> pg_backend_pid() AND pid <> $1",
            other_than,
        )
        found[:] = [] if pid is None else [pid]
        return bool(found)

    await tools.wait_for(waiting, "Flick's write of the user's row to wait")
    return found[0]


async def ledger_reasons(tools: EngineTools) -> list[str]:
    return [str(r["reason"]) for r in await tools.ledger(UID)]


async def test_a_new_user_is_welcomed_while_their_row_is_still_being_written(
    harness: Harness, database_url: str, tools: EngineTools
) -> None:
    h = await harness()
    async with row_held(database_url) as held:
        await h.command(UID, "start")
        await h.command(UID, "balance")  # answered from memory too
        await write_waiting(tools)
        await tools.quiet(h)
        assert tools.texts(h, UID) == [WELCOME, t("en", "balance", n=1)]

        await h.command(UID, "create")  # saves a session: it waits for the row
        await held.execute("ROLLBACK")  # the test's row goes; Flick's insert goes ahead
        await held.close()
    await h.settle()
    assert tools.texts(h, UID)[2:] == [t("en", "consent_ask", terms=h.settings.terms_text)]
    assert await h.balance(UID) == 1
    assert await ledger_reasons(tools) == ["free"]
    assert (await tools.saved(UID))[0] == tools.State.CONSENT.value


async def test_a_new_users_row_stored_meanwhile_is_the_truth_for_what_follows(
    harness: Harness, database_url: str, tools: EngineTools
) -> None:
    """Stored by someone else between Flick's read and its write (a crashed predecessor's write,
    say): what follows the welcome uses the stored row, and no free credits are added to it."""
    h = await harness()
    async with row_held(database_url, balance=5) as held:
        await h.command(UID, "start")
        await write_waiting(tools)
        await tools.quiet(h)
        await h.command(UID, "create")
        await held.execute("COMMIT")
        await held.close()
    await h.settle()
    await h.command(UID, "balance")
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "balance", n=5)
    assert await h.balance(UID) == 5
    assert await ledger_reasons(tools) == []


async def test_a_new_users_first_write_that_fails_is_made_again_before_anything_needs_it(
    harness: Harness, database_url: str, tools: EngineTools
) -> None:
    h = await harness()
    async with row_held(database_url) as held:
        await h.command(UID, "start")
        pid = await write_waiting(tools)
        await pool().execute("SELECT pg_terminate_backend($1)", pid)  # the write fails
        await tools.quiet(h)
        await h.command(UID, "create")  # needs the row: its handler writes it again
        await write_waiting(tools, other_than=pid)
        await held.execute("ROLLBACK")
        await held.close()
    await h.settle()
    assert tools.texts(h, UID) == [WELCOME, t("en", "consent_ask", terms=h.settings.terms_text)]
    assert await h.balance(UID) == 1
    assert await ledger_reasons(tools) == ["free"]


async def test_an_idle_actor_does_not_stop_before_a_new_users_row_is_written(
    harness: Harness, database_url: str, tools: EngineTools
) -> None:
    h = await harness(actor_idle_seconds=0.05)
    async with row_held(database_url) as held:
        await h.command(UID, "start")
        await write_waiting(tools)
        assert UID in h.app.supervisor.actors  # idle, and still waiting for its write
        await held.execute("ROLLBACK")
        await held.close()

    async def stopped() -> bool:
        return UID not in h.app.supervisor.actors

    await tools.wait_for(stopped, "the idle actor to stop")
    assert await h.balance(UID) == 1
    assert await ledger_reasons(tools) == ["free"]


async def test_new_users_row_writes_piled_up_in_the_pool_past_admission(
    harness: Harness, database_url: str, tools: EngineTools
) -> None:
    """The bug: the write ran beside the reply outside admission, so past capacity new users
    were let in as fast as they were welcomed while their writes queued for a connection
    (bench.engine at 2x: ~500 waiting). Now the write keeps a slot until it lands."""
    other = UID + 1
    h = await harness(admission_slots=1)
    admission = h.app.supervisor.admission
    async with row_held(database_url) as held:
        await h.command(UID, "start")
        await write_waiting(tools)
        await tools.quiet(h)
        assert tools.texts(h, UID) == [WELCOME]  # welcomed while the write waits
        assert admission.busy == 1  # the write's slot

        await h.command(other, "start")
        await until(lambda: admission.waiting == 1, "the next new user to wait")
        assert tools.texts(h, other) == []
        await held.execute("ROLLBACK")  # the write lands, its slot goes to the next user
        await held.close()
    await h.settle()
    welcome = t("en", "welcome", name=f"User{other}", n=1, price=50)
    assert tools.texts(h, other) == [welcome]
    assert admission.busy == 0
    assert await h.balance(UID) == 1 and await h.balance(other) == 1
