"""The update state kurigram itself records while the bot serves, in the PostgreSQL session
storage: what a standby gateway resumes from after a takeover.

kurigram's own `handle_updates` runs on updates pushed through the offline Telegram (real
parsing, real handlers); the storage is the production one on the real test database. The
offline Telegram keeps what it delivered and answers `updates.getDifference` with it, so the
standby's catch-up (kurigram's `recover_gaps`) is played too, against the same Telegram.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pyrogram import filters
from pyrogram.handlers import MessageHandler

from flick.models import db, migrations
from flick.telegram.session_seal import Seal
from flick.telegram.session_store import DatabaseSessionStorage
from flick.testing.telegram import OfflineTelegram

TOKEN = "7012345678:takeover-test-token"


@pytest.fixture
async def session(database_url: str) -> AsyncIterator[str]:
    async with db.connection_pool(database_url, 1, 2):
        await migrations.apply()
        yield f"flick-bot-{uuid.uuid4().hex[:8]}"


def storage(name: str) -> DatabaseSessionStorage:
    return DatabaseSessionStorage(name, db.pool, Seal(TOKEN, name))


async def saved_pts(name: str) -> int | None:
    standby = storage(name)
    await standby.open()
    states = await standby.get_update_states(0)
    return states[0].pts if states else None


async def test_a_standby_resumes_from_the_pts_the_active_gateway_last_saved(session: str) -> None:
    seen: list[str] = []

    async def on_message(client: Any, message: Any) -> None:
        seen.append(message.text)

    tg = OfflineTelegram(session=storage(session))
    async with tg:
        tg.client.add_handler(MessageHandler(on_message, filters.text))
        alice = tg.user(1001, "Alice")
        one = tg.text(alice, "one")  # builders number updates as they build them
        two = tg.text(alice, "two")
        await tg.push(one, two)
        await tg.client.storage.save()  # as kurigram does at start and after catching up
        assert await saved_pts(session) == two.update.pts
        three = tg.text(alice, "three")
        await tg.push(three)  # received after the last save
        # A gateway SIGKILLed now: the standby asks Telegram again from the pts of "two", so
        # "three" is redelivered, not lost.
        assert await saved_pts(session) == two.update.pts
        assert seen == ["one", "two", "three"]
    # A graceful stop saves (kurigram's terminate): the next gateway starts after "three".
    assert await saved_pts(session) == three.update.pts
    # The sealed auth key came back too: a standby signs in with the same session.
    standby = storage(session)
    await standby.open()
    assert await standby.auth_key() == bytes(256) and await standby.user_id() is not None


async def test_the_standby_catches_up_on_what_telegram_redelivers_from_the_saved_pts(
    session: str,
) -> None:
    """The active gateway saved its state after "two", took "three" and died unsaved. The
    standby opens the same session in the database and catches up (kurigram's recover_gaps,
    getDifference from the saved pts) against the same Telegram: it gets "three", and only it."""
    active_seen: list[str] = []
    standby_seen: list[str] = []

    def recording(into: list[str]) -> MessageHandler:
        async def on_message(client: Any, message: Any) -> None:
            into.append(message.text)

        return MessageHandler(on_message, filters.text)

    active = await OfflineTelegram(session=storage(session)).open()
    try:
        active.client.add_handler(recording(active_seen))
        alice = active.user(1001, "Alice")
        one = active.text(alice, "one")  # builders number updates as they build them
        two = active.text(alice, "two")
        await active.push(one, two)
        await active.client.storage.save()
        await active.push(active.text(alice, "three"))  # then SIGKILL: never saved
        assert active_seen == ["one", "two", "three"]

        standby = OfflineTelegram(session=storage(session))
        standby.server.redelivery = active.server.redelivery  # one Telegram, two gateways
        async with standby:
            standby.client.add_handler(recording(standby_seen))
            await standby.catch_up()
            assert standby.server.redelivery.asked == [two.update.pts]
            assert standby_seen == ["three"]
    finally:
        active.client.executor.shutdown(wait=False)  # the dead gateway: no graceful stop
