"""The bot's session in the database: its auth key sealed under BOT_TOKEN
(flick/telegram/session_seal.py), so a dump of the database alone does not let anyone act as
the bot and the key is never logged; a session file carried over when the store changes."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
from loguru import logger
from pyrogram.storage import Storage, UpdateState

from flick.models import db, migrations
from flick.telegram.session_file import PrivateSessionStorage
from flick.telegram.session_import import import_file_session
from flick.telegram.session_seal import Seal
from flick.telegram.session_store import DatabaseSessionStorage
from flick.testing.telegram import raw

TOKEN = "7012345678:seal-test-token"


@pytest.fixture
async def name(database_url: str) -> AsyncIterator[str]:
    async with db.connection_pool(database_url, 1, 2):
        await migrations.apply()
        yield f"flick-bot-{uuid.uuid4().hex[:8]}"


async def test_the_row_holds_no_trace_of_the_auth_key(name: str) -> None:
    key = os.urandom(256)
    s = DatabaseSessionStorage(name, db.pool, Seal(TOKEN, name))
    await s.open()
    await s.auth_key(key)
    row = await db.pool().fetchval("SELECT auth_key FROM telegram_sessions WHERE name = $1", name)
    assert key[:16] not in row and len(row) == 1 + 12 + 256 + 16
    assert "seal-test-token" not in repr(s._seal) and name in repr(s)


async def test_a_new_bot_token_signs_in_afresh_and_says_so_without_the_key(name: str) -> None:
    key = os.urandom(256)
    s = DatabaseSessionStorage(name, db.pool, Seal(TOKEN, name))
    await s.open()
    await s.auth_key(key)
    await s.user_id(7012345678)
    logs: list[str] = []
    sink = logger.add(lambda m: logs.append(str(m)), level="DEBUG")
    try:
        other = DatabaseSessionStorage(name, db.pool, Seal("7012345678:regenerated", name))
        await other.open()
    finally:
        logger.remove(sink)
    assert await other.auth_key() is None  # kurigram then makes a new key and signs in
    assert any("another BOT_TOKEN" in line for line in logs)
    assert not any(key.hex()[:16] in line or "seal-test-token" in line for line in logs)


def test_a_sealed_key_opens_only_in_its_own_session() -> None:
    sealed = Seal(TOKEN, "flick-bot-1").seal(b"k" * 256)
    assert Seal(TOKEN, "flick-bot-1").open(sealed) == b"k" * 256
    assert Seal(TOKEN, "flick-bot-2").open(sealed) is None
    assert Seal(TOKEN, "flick-bot-1").open(sealed[:-1] + bytes([sealed[-1] ^ 1])) is None
    assert Seal(TOKEN, "flick-bot-1").open(b"") is None


async def test_switching_to_the_database_carries_the_session_file_over(
    name: str, tmp_path: Path
) -> None:
    """SESSION_STORE=file → database: the same key (no new sign-in), the peers, and the update
    state the file saved, so what Telegram sent during the switch is still fetched."""
    key = os.urandom(256)
    file: Storage = PrivateSessionStorage(name, workdir=tmp_path)
    await file.open()
    await file.auth_key(key)
    await file.user_id(7012345678)
    await file.is_bot(True)
    await file.test_mode(False)
    await file.update_peers([(42, 9999, "user", None)])
    await file.set_update_state(UpdateState(0, 321, 4, 1_700_000_000, 2))
    await file.save()
    await file.close()

    seal = Seal(TOKEN, name)
    path = tmp_path / f"{name}.session"
    carried = DatabaseSessionStorage(
        name, db.pool, seal, first_use=partial(import_file_session, path, name, seal=seal)
    )
    await carried.open()
    assert await carried.auth_key() == key and await carried.is_bot()
    assert await carried.get_update_states() == [UpdateState(0, 321, 4, 1_700_000_000, 2)]
    assert await carried.get_peer_by_id(42) == raw.types.InputPeerUser(user_id=42, access_hash=9999)
    # Once: the database is the session from now on, whatever the file says later.
    await carried.set_update_state(UpdateState(0, 400, None, None, None))
    await carried.save()
    again = DatabaseSessionStorage(
        name, db.pool, seal, first_use=partial(import_file_session, path, name, seal=seal)
    )
    await again.open()
    assert [s.pts for s in await again.get_update_states()] == [400]
