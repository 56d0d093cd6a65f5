"""Again with the same photos, through kurigram: the buttons under the delivered video come back
as callback queries on that video's message and start a new generation from the stored photos
(the real SDKs against the spec-validating fakes), one credit per press."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flick.i18n import t
from flick.models.db import pool
from flick.storage import S3Storage
from flick.testing.telegram import raw

from .conftest import Bot, running_bot


def video_buttons(bot: Bot, chat_id: int) -> tuple[int, dict[str, str]]:
    """The latest video's message id and its callback buttons, by their data's prefix."""
    media = [m for m in bot.tg.sent_media if m.kind == "video" and m.chat_id == chat_id][-1]
    (send,) = [
        x
        for x in bot.tg.sent(raw.functions.messages.SendMedia, chat_id, ok=True)
        if x.request is media.request
    ]
    rows = bot.tg.buttons(send)
    return media.message_id, {d.partition(":")[0]: d for row in rows for _, d in row}


async def generations(uid: int) -> list[Any]:
    return list(await pool().fetch('SELECT * FROM generations WHERE "user" = $1 ORDER BY id', uid))


async def test_try_again_and_another_style_from_the_delivered_video(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> None:
    async with running_bot(database_url, storage, tmp_path, free_credits=3) as bot:
        alice = bot.tg.user(5101, "Alice")
        await bot.make_video(alice)
        message_id, buttons = video_buttons(bot, alice.id)
        assert set(buttons) == {"retry", "again", "create", "buy"}
        first = (await generations(alice.id))[0]

        # A double tap: two presses in one batch of updates. One new video, one credit.
        tap = bot.tg.callback(alice, buttons["retry"], message_id=message_id)
        await bot.push(tap, bot.tg.callback(alice, buttons["retry"], message_id=message_id))
        rows = await generations(alice.id)
        assert [r["status"] for r in rows] == ["done", "done"]
        assert (rows[1]["photo1_key"], rows[1]["photo2_key"], rows[1]["style"]) == (
            first["photo1_key"],
            first["photo2_key"],
            "kiss",
        )
        assert t("en", "busy") in bot.tg.texts_to(alice.id)
        assert len(bot.tg.sent_videos(alice.id)) == 2 and bot.replicate.predictions_created == 2
        assert await bot.h.balance(alice.id) == 1

        # The first video's button is stale now; the new video's "Another style" works.
        await bot.push(bot.tg.callback(alice, buttons["retry"], message_id=message_id))
        assert bot.tg.texts_to(alice.id)[-1] == t("en", "again_stale")
        message_id, buttons = video_buttons(bot, alice.id)
        await bot.push(bot.tg.callback(alice, buttons["again"], message_id=message_id))
        assert bot.tg.texts_to(alice.id)[-1] == t("en", "pick_style", n=1)  # the balance above
        await bot.push(bot.tg.callback(alice, "style:hug"))
        rows = await generations(alice.id)
        assert [r["style"] for r in rows] == ["kiss", "kiss", "hug"]
        assert rows[2]["status"] == "done" and rows[2]["photo1_key"] == first["photo1_key"]
        assert len(bot.tg.sent_videos(alice.id)) == 3 and bot.replicate.predictions_created == 3
        assert await bot.h.balance(alice.id) == 0 == await bot.h.ledger_sum(alice.id)
        answered = bot.tg.sent(raw.functions.messages.SetBotCallbackAnswer, ok=True)
        # Every press is answered, the refused ones too: consent and style to make the first
        # video, the double tap, the stale press, "Another style" and its style.
        assert len(answered) == 7
