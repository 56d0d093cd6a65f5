"""What kurigram hands the session storage with every update (its users, its pts) costs no
write when nothing changed: both of Flick's storages write a peer only when it is new, changed
or due for a refresh (flick/telegram/known_peers.py), and the session file writes the update
state when it is read or saved (flick/telegram/session_file.py), as the database store does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pyrogram.storage import UpdateState

from flick.models import db, migrations
from flick.telegram.known_peers import KnownPeers
from flick.telegram.session_file import PrivateSessionStorage
from flick.telegram.session_seal import Seal
from flick.telegram.session_store import DatabaseSessionStorage
from flick.testing.telegram import raw

TOKEN = "7012345678:known-peers-token"
ALICE = (42, 9999, "user", None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_peer_is_written_when_new_changed_or_due_for_a_refresh() -> None:
    clock = Clock()
    known = KnownPeers(refresh=60, clock=clock)
    assert known.fresh([ALICE]) == [ALICE]
    assert known.fresh([ALICE]) == []
    assert known.get(42) == (9999, "user")
    moved = (42, 1111, "user", None)  # a new access hash
    bot = (42, 5, "bot", None)  # then a new type
    assert known.fresh([moved, bot]) == [moved, bot]
    clock.now = 61
    assert known.fresh([bot]) == [bot]


def test_usernames_are_written_when_they_change_and_none_is_left_out() -> None:
    known = KnownPeers()
    assert known.fresh_usernames([(42, ["alice", None])]) == {42: ("alice",)}
    assert known.fresh_usernames([(42, ["alice"]), (43, ["bob"])]) == {43: ("bob",)}
    assert known.fresh_usernames([(42, ["alice2"])]) == {42: ("alice2",)}


def test_past_its_limit_the_memory_is_forgotten_and_each_peer_written_once_more() -> None:
    known = KnownPeers(limit=3)
    peers = [(i, i, "user", None) for i in range(4)]
    assert known.fresh(peers) == peers
    assert known.fresh(peers[:1]) == peers[:1]  # over the limit: forgotten first
    assert known.fresh(peers[:1]) == []


def test_a_forgotten_peer_is_written_again() -> None:
    known = KnownPeers()
    known.fresh([ALICE, (43, 1, "user", None)])
    known.fresh_usernames([(42, ["alice"])])
    known.forget([42])
    assert known.fresh([ALICE, (43, 1, "user", None)]) == [ALICE]
    assert known.fresh_usernames([(42, ["alice"])]) == {42: ("alice",)}
    known.forget()
    assert known.get(43) is None


async def test_the_session_file_writes_a_known_peer_once(tmp_path: Path) -> None:
    s = PrivateSessionStorage("flick-bot", workdir=tmp_path)
    await s.open()
    statements: list[str] = []
    s.conn.set_trace_callback(statements.append)
    for _ in range(3):  # three updates from the same user
        await s.update_peers([ALICE])
        await s.update_usernames([(42, ["alice"])])
    assert [q for q in statements if "peers" in q or "usernames" in q] == [
        "REPLACE INTO peers (id, access_hash, type, phone_number) VALUES (42, 9999, 'user', NULL)",
        "DELETE FROM usernames WHERE id IN (42)",
        "REPLACE INTO usernames (id, username) VALUES (42, 'alice')",
    ]
    await s.save()
    await s.close()
    again = PrivateSessionStorage("flick-bot", workdir=tmp_path)
    await again.open()
    assert await again.get_peer_by_username("alice") == raw.types.InputPeerUser(
        user_id=42, access_hash=9999
    )
    await again.close()


async def test_the_session_file_writes_the_update_state_once_when_it_is_saved(
    tmp_path: Path,
) -> None:
    s = PrivateSessionStorage("flick-bot", workdir=tmp_path)
    await s.open()
    statements: list[str] = []
    s.conn.set_trace_callback(statements.append)
    await s.set_update_state(UpdateState(0, 100, 5, 1_700_000_000, 10))
    for pts in range(101, 110):  # nine updates, each with its pts
        await s.set_update_state(UpdateState(0, pts, None, None, None))
    assert not [q for q in statements if "update_state" in q]
    await s.save()
    assert len([q for q in statements if "INSERT INTO update_state" in q]) == 1
    await s.set_update_state(UpdateState(0, 110, None, 1_700_000_100, None))  # not saved
    assert await s.get_update_states(0) == [UpdateState(0, 110, 5, 1_700_000_100, 10)]
    await s.close()
    again = PrivateSessionStorage("flick-bot", workdir=tmp_path)
    await again.open()
    assert await again.get_update_states() == [UpdateState(0, 109, 5, 1_700_000_000, 10)]
    await again.close()


class CountingPool:
    """Flick's pool as the storage's executor, counting its writes; fails the next `n` writes
    with a dropped connection when told to."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.fail_next = 0

    def _write(self, query: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionResetError("connection lost (test)")
        tables = ("telegram_peers", "telegram_usernames", "telegram_sessions")
        self.writes.append(next((t for t in tables if t in query), query))

    async def execute(self, query: str, *args: Any) -> str:
        self._write(query)
        done: str = await db.pool().execute(query, *args)
        return done

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        self._write(query)
        await db.pool().executemany(query, args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        rows: list[Any] = await db.pool().fetch(query, *args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await db.pool().fetchrow(query, *args)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[tuple[DatabaseSessionStorage, CountingPool]]:
    async with db.connection_pool(database_url, 1, 2):
        await migrations.apply()
        name = f"flick-bot-{uuid.uuid4().hex[:8]}"
        counting = CountingPool()
        s = DatabaseSessionStorage(name, lambda: counting, Seal(TOKEN, name))
        await s.open()
        counting.writes.clear()
        yield s, counting
        await s.close()


async def test_the_database_session_writes_a_known_peer_once(
    database: tuple[DatabaseSessionStorage, CountingPool],
) -> None:
    s, counting = database
    for _ in range(3):
        await s.update_peers([ALICE])
        await s.update_usernames([(42, ["alice"])])
    assert counting.writes == ["telegram_peers", "telegram_usernames"]
    assert await s.get_peer_by_username("alice") == raw.types.InputPeerUser(
        user_id=42, access_hash=9999
    )


async def test_a_peer_whose_write_failed_is_written_with_the_next_update(
    database: tuple[DatabaseSessionStorage, CountingPool],
) -> None:
    s, counting = database
    counting.fail_next = 2
    with pytest.raises(ConnectionResetError):
        await s.update_peers([ALICE])
    with pytest.raises(ConnectionResetError):
        await s.update_usernames([(42, ["alice"])])
    await s.update_peers([ALICE])  # the same update, redelivered, or the user's next one
    await s.update_usernames([(42, ["alice"])])
    assert counting.writes == ["telegram_peers", "telegram_usernames"]
    row = await db.pool().fetchrow(
        "SELECT access_hash FROM telegram_peers WHERE session = $1 AND peer_id = 42", s.name
    )
    assert row is not None and row["access_hash"] == 9999
    assert await s.get_peer_by_username("alice") == raw.types.InputPeerUser(
        user_id=42, access_hash=9999
    )
