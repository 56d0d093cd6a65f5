"""What kurigram asks of a session storage, kept by both of Flick's: the private SQLite file
(SESSION_STORE=file, flick.telegram.client) and the rows in PostgreSQL (SESSION_STORE=database,
flick.telegram.session_store) on the real test database.

Each test opens a storage, closes it and opens a new one on the same session, as a restarted
(or a standby) gateway does: what `save()` wrote is there, what it did not is not.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pyrogram.storage import Storage, UpdateState

from flick.models import db, migrations
from flick.telegram.session_file import PrivateSessionStorage
from flick.telegram.session_seal import Seal
from flick.telegram.session_store import DatabaseSessionStorage
from flick.testing.telegram import raw

TOKEN = "123456:contract-test-token"
Opener = Callable[[], Awaitable[Storage]]


@pytest.fixture(params=["file", "database"])
async def reopen(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[Opener]:
    """Opens a new storage on one session each time it is called (a fresh session per test)."""
    name = f"flick-bot-{uuid.uuid4().hex[:12]}"
    opened: list[Storage] = []

    def make_file() -> Storage:
        return PrivateSessionStorage(name, workdir=tmp_path)

    async def opener(make: Callable[[], Storage]) -> Storage:
        storage = make()
        await storage.open()
        opened.append(storage)
        return storage

    if request.param == "file":
        yield lambda: opener(make_file)
        return
    async with db.connection_pool(database_url, 1, 2):
        await migrations.apply()

        def make_database() -> Storage:
            return DatabaseSessionStorage(name, db.pool, Seal(TOKEN, name))

        yield lambda: opener(make_database)


async def test_a_new_session_is_empty_on_kurigrams_default_dc(reopen: Opener) -> None:
    s = await reopen()
    assert await s.dc_id() == 2
    # kurigram's test for "no session yet, sign in": any of these None.
    assert await s.auth_key() is None
    assert await s.user_id() is None
    assert await s.is_bot() is None
    assert await s.get_update_states() == []


async def test_the_signed_in_session_is_there_after_a_restart(reopen: Opener) -> None:
    key = bytes(range(256))
    s = await reopen()
    await s.dc_id(4)
    await s.server_address("149.154.167.91")
    await s.port(443)
    await s.api_id(12345)
    await s.test_mode(False)
    await s.auth_key(key)
    await s.user_id(777000)
    await s.is_bot(True)
    await s.save()
    await s.close()
    again = await reopen()
    assert await again.dc_id() == 4
    assert await again.server_address() == "149.154.167.91"
    assert await again.port() == 443
    assert await again.api_id() == 12345
    assert not await again.test_mode()
    assert await again.auth_key() == key
    assert await again.user_id() == 777000
    assert await again.is_bot()
    assert await again.date() > 0  # save() stamps it
    # kurigram's session string is built from the same accessors, the same on both.
    assert await again.export_session_string() == await again.export_session_string()


async def test_update_state_keeps_what_a_partial_update_leaves_out(reopen: Opener) -> None:
    s = await reopen()
    await s.set_update_state(UpdateState(0, 100, 5, 1_700_000_000, 10))
    await s.set_update_state(UpdateState(0, 107, None, None, None))  # one new message's pts
    await s.set_update_state(UpdateState(-1001234, 40, None, 1_600_000_000, None))
    assert await s.get_update_states(0) == [UpdateState(0, 107, 5, 1_700_000_000, 10)]
    assert [st.id for st in await s.get_update_states()] == [-1001234, 0]  # oldest date first
    assert await s.get_update_states([]) == []
    await s.delete_update_state(-1001234)
    assert [st.id for st in await s.get_update_states()] == [0]


async def test_saved_update_state_is_what_the_next_gateway_resumes_from(reopen: Opener) -> None:
    s = await reopen()
    await s.set_update_state(UpdateState(0, 100, 5, 1_700_000_000, 10))
    await s.set_update_state(UpdateState(-1005, 9, None, 1_700_000_001, None))
    await s.save()
    await s.set_update_state(UpdateState(0, 150, None, None, None))  # received, never saved
    await s.delete_update_state(-1005)  # nor this
    await s.close()
    again = await reopen()
    assert await again.get_update_states() == [
        UpdateState(0, 100, 5, 1_700_000_000, 10),
        UpdateState(-1005, 9, None, 1_700_000_001, None),
    ]
    await again.delete_update_state(-1005)
    await again.save()
    await again.close()
    third = await reopen()
    assert [st.id for st in await third.get_update_states()] == [0]


async def test_peers_resolve_by_id_username_and_phone(reopen: Opener) -> None:
    s = await reopen()
    await s.update_peers(
        [
            (42, 9999, "user", "+15550001"),
            (-1000000002000, 5555, "supergroup", None),
            (-77, 0, "group", None),
        ]
    )
    await s.update_usernames([(42, ["alice", None, "alice_two"])])
    assert await s.get_peer_by_id(42) == raw.types.InputPeerUser(user_id=42, access_hash=9999)
    assert await s.get_peer_by_id(-1000000002000) == raw.types.InputPeerChannel(
        channel_id=2000, access_hash=5555
    )
    assert await s.get_peer_by_id(-77) == raw.types.InputPeerChat(chat_id=77)
    assert await s.get_peer_by_username("alice_two") == raw.types.InputPeerUser(
        user_id=42, access_hash=9999
    )
    assert await s.get_peer_by_phone_number("+15550001") == raw.types.InputPeerUser(
        user_id=42, access_hash=9999
    )
    await s.update_usernames([(42, ["bob"])])  # the old names go
    with pytest.raises(KeyError):
        await s.get_peer_by_username("alice")
    for missing in (
        s.get_peer_by_id(43),
        s.get_peer_by_phone_number("+1"),
        s.get_peer_by_username("x"),
    ):
        with pytest.raises(KeyError):
            await missing


async def test_peers_are_there_after_a_restart_with_a_changed_access_hash(reopen: Opener) -> None:
    s = await reopen()
    await s.update_peers([(42, 1, "user", None)])
    await s.update_peers([(42, 2, "bot", None)])
    await s.update_usernames([(42, ["carol"])])
    await s.save()
    await s.close()
    again = await reopen()
    assert await again.get_peer_by_id(42) == raw.types.InputPeerUser(user_id=42, access_hash=2)
    assert await again.get_peer_by_username("carol") == raw.types.InputPeerUser(
        user_id=42, access_hash=2
    )


async def test_delete_leaves_a_new_session(reopen: Opener) -> None:
    s = await reopen()
    await s.auth_key(b"k" * 256)
    await s.user_id(1)
    await s.set_update_state(UpdateState(0, 1, 1, 1, 1))
    await s.save()
    await s.close()
    await s.delete()
    again = await reopen()
    assert await again.auth_key() is None
    assert await again.get_update_states() == []
