"""From /start to the video, through kurigram's own parsing and requests."""

from __future__ import annotations

from flick.i18n import t
from flick.models.db import pool
from flick.testing.bot import Bot
from flick.testing.engine import make_jpeg
from flick.testing.telegram import raw


async def test_start_to_video_through_the_offline_telegram(bot: Bot) -> None:
    alice = bot.tg.user(5001, "Alice")
    await bot.push(bot.tg.command(alice, "start"))
    assert bot.tg.texts_to(alice.id)[0].startswith("Hi Alice!")
    await bot.push(bot.tg.command(alice, "create"))
    # A callback comes from the bot's latest message by default: the consent prompt, the picker.
    await bot.push(bot.tg.callback(alice, "consent"))
    await bot.push(bot.tg.callback(alice, "style:kiss"))
    await bot.push(*bot.tg.album(alice, [make_jpeg("red"), make_jpeg("blue")]))

    videos = bot.tg.sent_videos(alice.id)
    assert len(videos) == 1 and videos[0][4:8] == b"ftyp"  # an MP4, reassembled from its parts
    (send,) = bot.tg.sent(raw.functions.messages.SendMedia, alice.id)
    assert isinstance(send.request.media, raw.types.InputMediaUploadedDocument)
    assert send.request.message == t("en", "video_caption", style="💋 Kiss")

    row = await pool().fetchrow('SELECT * FROM generations WHERE "user" = $1', alice.id)
    assert row["status"] == "done" and row["video_file_id"]
    prefix = f"{alice.id}/"
    assert row["photo1_key"].startswith("photos/" + prefix) and row["photo1_key"].endswith(".jpg")
    assert row["combined_key"].startswith("combined/" + prefix)
    assert row["combined_key"].endswith("_kiss.jpg")
    assert row["video_key"].startswith("videos/" + prefix) and row["video_key"].endswith(
        "_kiss.mp4"
    )
    stored = await bot.h.storage.get(row["video_key"])
    assert stored == videos[0]
    assert bot.openai.calls("images.edit") and bot.replicate.predictions_created == 1

    # /history → the resend button re-sends by file id: no second upload.
    uploads = len(bot.tg.uploaded_files)
    await bot.push(bot.tg.command(alice, "history"))
    await bot.push(bot.tg.callback(alice, f"video:{row['id']}"))
    assert len(bot.tg.sent_videos(alice.id)) == 2
    assert len(bot.tg.uploaded_files) == uploads


async def test_groups_channels_and_bots_get_no_conversation(bot: Bot) -> None:
    alice = bot.tg.user(5002, "Alice")
    other_bot = bot.tg.user(5003, "Robot", bot=True)
    group = bot.tg.group(kind="group")
    await bot.push(bot.tg.group_text(alice, "/start", chat=group))
    await bot.push(bot.tg.group_text(alice, "/create", chat=group))
    await bot.push(bot.tg.command(other_bot, "start"))
    sends = bot.tg.sent(raw.functions.messages.SendMessage)
    assert len(sends) == 1  # the group is told once that the bot works in private chats
    assert sends[0].request.message == t("en", "private_only")
    assert await pool().fetchval("SELECT count(*) FROM users") == 0
