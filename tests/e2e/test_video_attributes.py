"""Videos as Telegram shows them best: real size, length, streaming and a thumbnail, for big
uploads too; a video that is not one is refunded, never sent."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from flick.i18n import t
from flick.models.db import pool
from flick.storage import S3Storage
from flick.testing.media_files import make_audio_only, make_video, truncate
from flick.testing.telegram import raw

from .conftest import running_bot

MB = 1024 * 1024
SIZE, SECONDS = (720, 1280), 5.0


@pytest.fixture(scope="session")
def big_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """720×1280, 5 s of noise at 36 Mbit/s: over 20 MB, so kurigram uploads it in big parts."""
    path = tmp_path_factory.mktemp("videos") / "big.mp4"
    return make_video(path, size=SIZE, seconds=SECONDS, bitrate="36M", noise=True)


async def test_a_20_mb_video_carries_its_size_length_streaming_flag_and_thumbnail(
    database_url: str, storage: S3Storage, tmp_path: Path, big_video: Path
) -> None:
    data = await asyncio.to_thread(big_video.read_bytes)
    assert len(data) >= 20 * MB
    async with running_bot(database_url, storage, tmp_path, deliver_budget=60) as bot:
        bot.replicate.output_file = big_video
        alice = bot.tg.user(5101, "Alice")
        await bot.make_video(alice)

        (send,) = bot.tg.sent(raw.functions.messages.SendMedia, alice.id, ok=True)
        media = send.request.media
        assert isinstance(media, raw.types.InputMediaUploadedDocument)
        assert isinstance(media.file, raw.types.InputFileBig)  # a big-file upload
        (video,) = [a for a in media.attributes if isinstance(a, raw.types.DocumentAttributeVideo)]
        assert (video.w, video.h) == SIZE
        assert video.duration == pytest.approx(SECONDS, abs=0.05)
        assert video.supports_streaming is True
        assert media.nosound_video is True  # no audio stream in it
        assert isinstance(media.thumb, raw.types.InputFile)  # uploaded with the video

        (sent,) = [m for m in bot.tg.server.media if m.chat_id == alice.id]
        assert sent.data == data
        assert sent.thumb is not None and len(sent.thumb) <= 200 * 1024
        with Image.open(io.BytesIO(sent.thumb)) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) <= 320
            # Cut to the video's shape, from the composed picture (the fake's is square).
            assert thumb.size[0] / thumb.size[1] == pytest.approx(SIZE[0] / SIZE[1], abs=0.01)

        row = await pool().fetchrow('SELECT * FROM generations WHERE "user" = $1', alice.id)
        assert row["status"] == "done" and row["video_file_id"]
        # Re-sent by its file id: no second upload, the stored document keeps its attributes.
        uploads = len(bot.tg.uploaded_files)
        await bot.push(bot.tg.command(alice, "history"))
        await bot.push(bot.tg.callback(alice, f"video:{row['id']}"))
        again = bot.tg.sent(raw.functions.messages.SendMedia, alice.id, ok=True)[-1]
        assert isinstance(again.request.media, raw.types.InputMediaDocument)
        assert len(bot.tg.uploaded_files) == uploads


def _corrupt(tmp: Path) -> Path:
    path = tmp / "corrupt.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
    return path


def _truncated(tmp: Path) -> Path:
    whole = make_video(tmp / "whole.mp4", size=(320, 240), seconds=2, bitrate="4M", noise=True)
    return truncate(whole, tmp / "truncated.mp4")


def _no_video_stream(tmp: Path) -> Path:
    return make_audio_only(tmp / "sound.mp4")


@pytest.mark.parametrize("broken", [_corrupt, _truncated, _no_video_stream])
async def test_a_video_the_probe_refuses_is_refunded_and_never_sent(
    database_url: str, storage: S3Storage, tmp_path: Path, broken: object
) -> None:
    assert callable(broken)
    async with running_bot(database_url, storage, tmp_path) as bot:
        bot.replicate.output_file = broken(tmp_path)
        alice = bot.tg.user(5102, "Alice")
        await bot.make_video(alice)

        assert bot.tg.sent(raw.functions.messages.SendMedia, alice.id) == []
        assert bot.tg.sent_videos(alice.id) == []
        row = await pool().fetchrow('SELECT * FROM generations WHERE "user" = $1', alice.id)
        assert (row["status"], row["refunded"], row["error_class"]) == ("failed", True, "bad_video")
        assert row["video_key"] is None
        balance = await pool().fetchval(
            "SELECT balance FROM users WHERE telegram_id = $1", alice.id
        )
        assert balance == 1  # the free credit is back
        assert t("en", "failed_bad_output", n=balance) in bot.tg.texts_to(alice.id)
