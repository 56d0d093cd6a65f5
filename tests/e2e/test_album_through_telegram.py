"""An album of three through kurigram's own parsing (#15): three `UpdateNewMessage`s sharing a
`grouped_id`, one reply saying which two photos Flick uses, those two (and only those) downloaded
and stored, one video; the same album redelivered changes nothing."""

from __future__ import annotations

import io

from PIL import Image

from flick.i18n import t
from flick.models.db import pool
from flick.testing.bot import Bot
from flick.testing.engine import make_jpeg
from flick.testing.telegram import raw

RGB = {"red": (255, 0, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


async def colour_of(bot: Bot, key: str) -> str:
    storage = bot.h.app.storage
    assert storage is not None
    with Image.open(io.BytesIO(await storage.get(key))) as img:
        px = img.convert("RGB").getpixel((img.width // 2, img.height // 2))
    assert isinstance(px, tuple)
    return min(RGB, key=lambda name: sum((a - b) ** 2 for a, b in zip(RGB[name], px, strict=True)))


async def test_album_of_three_through_the_offline_telegram(bot: Bot) -> None:
    alice = bot.tg.user(5101, "Alice")
    await bot.push(bot.tg.command(alice, "create"))
    await bot.push(bot.tg.callback(alice, "consent"))
    await bot.push(bot.tg.callback(alice, "style:kiss"))
    before = len(bot.tg.texts_to(alice.id))
    album = bot.tg.album(alice, [make_jpeg(c) for c in RGB])
    grouped = {i.message.grouped_id for i in album}
    assert len(album) == 3 and len(grouped) == 1 and None not in grouped
    await bot.push(*album)

    # Then the progress message (sent once, edited as the video is made): nothing else.
    assert bot.tg.texts_to(alice.id)[before:] == [
        t("en", "photos_used_two", first=1, second=2, n=3),
        t("en", "status_composing", style="💋 Kiss"),
    ]
    assert len(bot.tg.sent_videos(alice.id)) == 1
    row = await pool().fetchrow('SELECT * FROM generations WHERE "user" = $1', alice.id)
    assert row["status"] == "done"
    assert [await colour_of(bot, row["photo1_key"]), await colour_of(bot, row["photo2_key"])] == [
        "red",
        "blue",
    ]
    # Only the two photos it used were downloaded.
    fetched = {repr(e.request.location) for e in bot.tg.sent(raw.functions.upload.GetFile)}
    assert len(fetched) == 2

    # Telegram redelivers the album: no second reply, no second video, no second charge.
    after = len(bot.tg.texts_to(alice.id))
    await bot.push(*album)
    assert bot.tg.texts_to(alice.id)[after:] == []
    assert len(bot.tg.sent_videos(alice.id)) == 1
    assert (
        await pool().fetchval('SELECT count(*) FROM generations WHERE "user" = $1', alice.id) == 1
    )
