"""PEER_ID_INVALID is not "the user blocked the bot".

kurigram answers it when it cannot address a user: no access hash for them, as after its session
file (the peer cache) was lost, until the user writes again. The user is never marked blocked; a
video's delivery retries it within its budget and, if it still fails, the generation ends refunded
(the video stays in storage); replies and broadcasts carry on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flick.i18n import t
from flick.models.db import pool
from flick.storage import S3Storage
from flick.testing.bot import Bot, running_bot
from flick.testing.engine import make_jpeg
from flick.testing.telegram import errors, raw

SendMedia = raw.functions.messages.SendMedia
SendMessage = raw.functions.messages.SendMessage


@pytest.fixture
async def bot(database_url: str, storage: S3Storage, tmp_path: Path) -> AsyncIterator[Bot]:
    """The e2e bot, with a short delivery budget (a failing delivery ends within seconds)."""
    async with running_bot(database_url, storage, tmp_path, deliver_budget=2) as bot:
        yield bot


async def _order_a_video(bot: Bot, user: Any) -> None:
    """/create, consent, a style and two photos; returns once the bot has them (not the video)."""
    await bot.push(bot.tg.command(user, "create"))
    await bot.push(bot.tg.callback(user, "consent"))
    await bot.push(bot.tg.callback(user, "style:kiss"))
    await bot.tg.push(*bot.tg.album(user, [make_jpeg("red"), make_jpeg("blue")]))


def _forget_peer(bot: Bot, user_id: int) -> None:
    """A lost session file: kurigram no longer knows the user's access hash, and Telegram does not
    resolve them from a bare id either."""
    peers: Any = bot.tg.client.storage
    peers.conn.execute("DELETE FROM peers WHERE id = ?", (user_id,))
    del bot.tg.server.users[user_id]


async def _user_row(user_id: int) -> Any:
    return await pool().fetchrow(
        "SELECT blocked, balance FROM users WHERE telegram_id = $1", user_id
    )


async def _ledger(user_id: int) -> list[str]:
    rows = await pool().fetch('SELECT reason FROM ledger WHERE "user" = $1 ORDER BY id', user_id)
    return [r["reason"] for r in rows]


async def test_peer_id_invalid_on_delivery_is_retried_and_the_user_is_not_blocked(
    bot: Bot,
) -> None:
    alice = bot.tg.user(5101, "Alice")
    await bot.push(bot.tg.command(alice, "start"))
    bot.tg.fail_next(SendMedia, errors.PeerIdInvalid, chat_id=alice.id)
    await _order_a_video(bot, alice)
    await bot.h.settle()

    assert len(bot.tg.sent_videos(alice.id)) == 1  # the second attempt got through
    failed = bot.tg.sent(SendMedia, alice.id, ok=False)
    assert [type(e.error).__name__ for e in failed] == ["PeerIdInvalid"]
    row = await pool().fetchrow('SELECT * FROM generations WHERE "user" = $1', alice.id)
    assert row["status"] == "done" and row["refunded"] is False
    assert (await _user_row(alice.id))["blocked"] is False
    assert bot.h.app.supervisor.crashes == 0


async def test_peer_id_invalid_on_delivery_refunds_once_and_keeps_the_video(bot: Bot) -> None:
    alice = bot.tg.user(5102, "Alice")
    await bot.push(bot.tg.command(alice, "start"))
    bot.replicate.run_time = 1.0  # the session file is lost while the video renders
    await _order_a_video(bot, alice)
    _forget_peer(bot, alice.id)
    await bot.h.settle()

    # Retried, then given up: no video reached her, and she is not taken for a blocker.
    assert bot.tg.sent_videos(alice.id) == []
    assert (await _user_row(alice.id))["blocked"] is False
    row = await pool().fetchrow('SELECT * FROM generations WHERE "user" = $1', alice.id)
    assert (row["status"], row["error_class"], row["refunded"]) == ("failed", "unreachable", True)
    assert "could not address chat" in row["error_message"]
    assert "did not block" in row["error_message"]
    assert await _ledger(alice.id) == ["free", "generation", "refund"]
    assert (await _user_row(alice.id))["balance"] == 1
    # The video made for her stays in storage.
    assert (await bot.h.storage.get(row["video_key"]))[4:8] == b"ftyp"
    # Nothing crashed on the replies that could not reach her meanwhile.
    assert bot.h.app.supervisor.crashes == 0

    # She writes again: the update teaches kurigram her peer, and the bot answers her.
    bot.tg.server.users[alice.id] = alice
    await bot.push(bot.tg.command(alice, "balance"))
    assert bot.tg.texts_to(alice.id)[-1] == t("en", "balance", n=1)
    assert await _ledger(alice.id) == ["free", "generation", "refund"]  # refunded once


async def test_peer_id_invalid_on_a_reply_neither_crashes_the_actor_nor_blocks(bot: Bot) -> None:
    alice = bot.tg.user(5103, "Alice")
    await bot.push(bot.tg.command(alice, "start"))
    bot.tg.fail_next(SendMessage, errors.PeerIdInvalid, chat_id=alice.id)
    await bot.push(bot.tg.command(alice, "balance"))
    assert bot.h.app.supervisor.crashes == 0
    assert (await _user_row(alice.id))["blocked"] is False
    await bot.push(bot.tg.command(alice, "balance"))
    assert bot.tg.texts_to(alice.id)[-1] == t("en", "balance", n=1)


async def test_peer_id_invalid_in_a_broadcast_counts_as_failed_not_blocked(bot: Bot) -> None:
    alice, bob = bot.tg.user(5104, "Alice"), bot.tg.user(5105, "Bob")
    for user in (alice, bob):
        await bot.push(bot.tg.command(user, "start"))
    bot.tg.fail_next(SendMessage, errors.PeerIdInvalid, chat_id=bob.id)
    broadcaster = bot.h.app.broadcaster
    bid = await broadcaster.create(alice.id, "New styles are here!")
    await broadcaster.wait()

    row = await pool().fetchrow("SELECT * FROM broadcasts WHERE id = $1", bid)
    assert (row["status"], row["sent"], row["failed"]) == ("done", 1, 1)
    assert "New styles are here!" in bot.tg.texts_to(alice.id)
    assert "New styles are here!" not in bot.tg.texts_to(bob.id)
    assert (await _user_row(bob.id))["blocked"] is False
