"""Telegram refusing a send the user waits for (an invoice, a video, an edit) with an RPC error:
a plain-words reply, no crash, no apology, and no order or state left dangling."""

from __future__ import annotations

from typing import Any

from pyrogram import errors

from flick.i18n import t
from flick.models.db import pool
from flick.testing.bot import Bot
from flick.testing.telegram import raw

SendMedia = raw.functions.messages.SendMedia
EditMessage = raw.functions.messages.EditMessage


async def test_an_invoice_telegram_refuses_gets_a_reply_and_leaves_no_pending_order(
    bot: Bot,
) -> None:
    alice = bot.tg.user(6101, "Alice")
    await bot.push(bot.tg.command(alice, "buy"))
    bot.tg.fail_next(SendMedia, errors.StarsInvoiceInvalid, chat_id=alice.id)
    await bot.push(bot.tg.callback(alice, "buy:1"))
    texts = bot.tg.texts_to(alice.id)
    assert texts[-1] == t("en", "invoice_failed")
    assert t("en", "crash_sorry") not in texts
    assert await pool().fetchval("SELECT status FROM orders") == "canceled"
    assert bot.h.app.supervisor.crashes == 0
    # And the next try works: the refusal left nothing behind that blocks it.
    await bot.push(bot.tg.callback(alice, "buy:1"))
    assert await pool().fetchval("SELECT count(*) FROM orders WHERE status = 'pending'") == 1


async def test_a_refused_progress_edit_does_not_stop_the_video(bot: Bot) -> None:
    alice = bot.tg.user(6102, "Alice")
    for _ in range(3):  # every edit of the progress message is refused
        bot.tg.fail_next(EditMessage, errors.MessageIdInvalid, chat_id=alice.id)
    await bot.make_video(alice)
    row = await pool().fetchrow(
        'SELECT status, refunded FROM generations WHERE "user" = $1', alice.id
    )
    assert (row["status"], row["refunded"]) == ("done", False)
    assert bot.h.app.supervisor.crashes == 0


async def test_a_video_telegram_refuses_is_refunded_once_with_a_plain_reason(bot: Bot) -> None:
    alice = bot.tg.user(6103, "Alice")
    bot.tg.fail_next(SendMedia, errors.MediaEmpty, chat_id=alice.id)  # the video's send
    await bot.make_video(alice)
    row = await pool().fetchrow(
        'SELECT status, refunded, error_class FROM generations WHERE "user" = $1', alice.id
    )
    assert (row["status"], row["refunded"], row["error_class"]) == ("failed", True, "telegram")
    texts = bot.tg.texts_to(alice.id)
    assert t("en", "failed_undeliverable", n=1) in texts
    assert t("en", "crash_sorry") not in texts
    ledger = await pool().fetch('SELECT reason FROM ledger WHERE "user" = $1 ORDER BY id', alice.id)
    assert [r["reason"] for r in ledger] == ["free", "generation", "refund"]


async def test_a_resend_whose_file_is_gone_uploads_it_again(bot: Bot) -> None:
    alice = bot.tg.user(6104, "Alice")
    await bot.make_video(alice)
    gen_id = await pool().fetchval('SELECT id FROM generations WHERE "user" = $1', alice.id)
    videos_before = len(_videos(bot, alice.id))
    bot.tg.fail_next(SendMedia, errors.MediaEmpty, chat_id=alice.id)  # the file id is refused
    await bot.push(bot.tg.callback(alice, f"video:{gen_id}"))
    refused = [m for m in bot.tg.sent(SendMedia, alice.id, ok=False) if _is_video(m.request)]
    assert len(refused) == 1  # the re-send by file id …
    videos = _videos(bot, alice.id)
    assert len(videos) == videos_before + 1  # … then an upload of our copy, which arrived
    assert isinstance(videos[-1].request.media, raw.types.InputMediaUploadedDocument)
    assert t("en", "crash_sorry") not in bot.tg.texts_to(alice.id)


def _videos(bot: Bot, chat_id: int) -> list[Any]:
    return [m for m in bot.tg.sent(SendMedia, chat_id) if _is_video(m.request)]


def _is_video(request: object) -> bool:
    media = getattr(request, "media", None)
    return not isinstance(media, raw.types.InputMediaInvoice) and media is not None
