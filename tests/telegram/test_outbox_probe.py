"""The outbox reads a stored video's size and length itself when the caller has none (a
re-send that uploads, a generation resumed from storage), and refuses a stored non-video."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from flick.media import MediaError
from flick.telegram.outbox import TelegramOutbox
from flick.testing.media_files import make_video
from flick.testing.memory import MemoryStorage
from flick.testing.telegram import OfflineTelegram, raw


async def test_a_stored_video_is_probed_and_gets_its_first_frame_as_thumbnail(
    tg: OfflineTelegram, outbox: TelegramOutbox, memory_storage: MemoryStorage, tmp_path: Path
) -> None:
    path = await asyncio.to_thread(make_video, tmp_path / "v.mp4", size=(120, 80), seconds=2)
    data = await asyncio.to_thread(path.read_bytes)
    await memory_storage.put("videos/1/v.mp4", data, "video/mp4")
    alice = tg.user(1001)
    await outbox.send_video(alice.id, "videos/1/v.mp4", "Again")
    (sent,) = tg.sent(raw.functions.messages.SendMedia, alice.id, ok=True)
    media = sent.request.media
    (attr,) = [a for a in media.attributes if isinstance(a, raw.types.DocumentAttributeVideo)]
    assert (attr.w, attr.h) == (120, 80) and attr.duration == pytest.approx(2.0, abs=0.05)
    (stored,) = tg.server.media
    assert stored.thumb is not None and stored.thumb[:2] == b"\xff\xd8"  # a JPEG


async def test_a_stored_file_that_is_no_video_is_never_sent(
    tg: OfflineTelegram, outbox: TelegramOutbox, memory_storage: MemoryStorage
) -> None:
    await memory_storage.put("videos/1/x.mp4", os.urandom(50_000), "video/mp4")
    alice = tg.user(1001)
    with pytest.raises(MediaError):
        await outbox.send_video(alice.id, "videos/1/x.mp4", "Again")
    assert tg.sent(raw.functions.messages.SendMedia) == []
