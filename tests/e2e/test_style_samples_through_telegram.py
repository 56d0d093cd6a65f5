"""Style previews: the samples go out as one album right above the picker, each uploaded once
and re-sent by file id afterwards; a style without a sample still works."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from PIL import Image

from flick.i18n import t
from flick.storage import S3Storage
from flick.styles import DEFAULT_FILE
from flick.testing.media_files import make_gif, make_video
from flick.testing.telegram import errors, raw

from .conftest import Bot, running_bot

UPLOADS = (
    raw.functions.upload.SaveFilePart,
    raw.functions.upload.SaveBigFilePart,
    raw.functions.messages.UploadMedia,
)
ALBUM = raw.functions.messages.SendMultiMedia


def styles_file(tmp_path: Path, samples: dict[str, Path]) -> Path:
    """The built-in styles, with a sample for each style named in `samples`."""
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    for key, sample in samples.items():
        text = text.replace(f"[styles.{key}]\n", f'[styles.{key}]\nsample = "{sample}"\n')
    path = tmp_path / "styles.toml"
    path.write_text(text, encoding="utf-8")
    return path


def samples(tmp_path: Path) -> dict[str, Path]:
    photo = tmp_path / "romantic.png"
    Image.new("RGB", (96, 64), (220, 140, 150)).save(photo)
    return {
        "romantic": photo,
        "hug": make_video(tmp_path / "hug.mp4", size=(96, 64), seconds=1),
        "kiss": make_gif(tmp_path / "kiss.gif"),
    }


async def to_picker(bot: Bot, user: Any) -> None:
    await bot.push(bot.tg.command(user, "create"))
    await bot.push(bot.tg.callback(user, "consent"))


async def picker_text(bot: Bot, user: Any) -> str:
    """The style picker's text as the user sees it: it shows their balance."""
    return t("en", "pick_style", n=await bot.h.balance(user.id))


def uploads(bot: Bot) -> int:
    return sum(len(bot.tg.sent(kind)) for kind in UPLOADS)


async def test_the_picker_shows_the_samples_as_one_album_uploaded_once(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> None:
    files = await asyncio.to_thread(samples, tmp_path)
    path = styles_file(tmp_path, files)
    async with running_bot(database_url, storage, tmp_path, styles_file=path) as bot:
        alice, bob = bot.tg.user(5201, "Alice"), bot.tg.user(5202, "Bob")
        await to_picker(bot, alice)

        (album,) = bot.tg.sent(ALBUM, alice.id, ok=True)
        items = album.request.multi_media
        assert [i.message for i in items] == ["💞 Romantic", "🤗 Hug", "💋 Kiss"]  # no dance
        assert isinstance(items[0].media, raw.types.InputMediaPhoto)
        assert all(isinstance(i.media, raw.types.InputMediaDocument) for i in items[1:])
        # Each video went up with its size, length and a thumbnail; the GIF as a silent MP4.
        videos = [
            e.request.media
            for e in bot.tg.sent(raw.functions.messages.UploadMedia, alice.id)
            if isinstance(e.request.media, raw.types.InputMediaUploadedDocument)
        ]
        assert len(videos) == 2 and all(v.thumb is not None for v in videos)
        for video in videos:
            (attr,) = [
                a for a in video.attributes if isinstance(a, raw.types.DocumentAttributeVideo)
            ]
            assert (attr.w, attr.h) in ((96, 64), (48, 32)) and attr.supports_streaming
        sent = [m for m in bot.tg.server.media if m.chat_id == alice.id]
        assert [m.kind for m in sent] == ["photo", "video", "video"]
        assert sent[0].data == await asyncio.to_thread(files["romantic"].read_bytes)
        assert sent[2].data is not None and re.match(rb"....ftyp", sent[2].data)
        # The picker comes right after it, and works as before.
        alice_picker = await picker_text(bot, alice)
        assert bot.tg.texts_to(alice.id)[-1] == alice_picker
        picker = [
            e
            for e in bot.tg.sent(raw.functions.messages.SendMessage, alice.id)
            if e.request.message == alice_picker
        ][-1]
        assert bot.tg.exchanges.index(album) < bot.tg.exchanges.index(picker)

        before = uploads(bot)
        await to_picker(bot, bob)
        (again,) = bot.tg.sent(ALBUM, bob.id, ok=True)
        assert uploads(bot) == before  # re-sent by file id: nothing uploaded again
        assert [i.message for i in again.request.multi_media] == [i.message for i in items]
        assert bot.tg.texts_to(bob.id)[-1] == await picker_text(bot, bob)


async def test_a_stale_sample_file_id_is_uploaded_again(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> None:
    files = await asyncio.to_thread(samples, tmp_path)
    path = styles_file(tmp_path, files)
    async with running_bot(database_url, storage, tmp_path, styles_file=path) as bot:
        alice, bob = bot.tg.user(5211, "Alice"), bot.tg.user(5212, "Bob")
        await to_picker(bot, alice)
        before = uploads(bot)
        bot.tg.fail_next(ALBUM, errors.FileReferenceExpired, chat_id=bob.id)
        await to_picker(bot, bob)
        assert len(bot.tg.sent(ALBUM, bob.id, ok=True)) == 1
        assert uploads(bot) > before
        assert bot.tg.texts_to(bob.id)[-1] == await picker_text(bot, bob)


async def test_one_sample_is_one_message_and_no_sample_no_album(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> None:
    photo = tmp_path / "hug.png"
    await asyncio.to_thread(Image.new("RGB", (40, 40), (90, 160, 200)).save, photo)
    path = styles_file(tmp_path, {"hug": photo})
    async with running_bot(database_url, storage, tmp_path, styles_file=path) as bot:
        alice = bot.tg.user(5221, "Alice")
        await to_picker(bot, alice)
        assert bot.tg.sent(ALBUM, alice.id) == []
        (single,) = bot.tg.sent(raw.functions.messages.SendMedia, alice.id, ok=True)
        assert isinstance(single.request.media, raw.types.InputMediaUploadedPhoto)
        assert single.request.message == "🤗 Hug"
        alice_picker = await picker_text(bot, alice)
        assert bot.tg.texts_to(alice.id)[-1] == alice_picker
        # The picker goes on to a video as before.
        await bot.push(bot.tg.callback(alice, "style:dance"))
        assert bot.tg.texts_to(alice.id)[-1] != alice_picker

    async with running_bot(database_url, storage, tmp_path / "plain") as bot:
        bob = bot.tg.user(5222, "Bob")
        await to_picker(bot, bob)
        assert bot.tg.sent(ALBUM) == [] and bot.tg.sent(raw.functions.messages.SendMedia) == []
        assert bot.tg.texts_to(bob.id)[-1] == await picker_text(bot, bob)
