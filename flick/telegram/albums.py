"""Albums of local files (the styles' samples), each uploaded once and re-sent by file id.

An album (`messages.sendMultiMedia`) takes photos and videos only, so a GIF goes into one as
the silent MP4 the bundled ffmpeg makes of it (Telegram loops a silent video in an album as it
would the GIF); a single item goes as its own kind, a GIF as an animation. Each file's Telegram
file id is remembered in memory, keyed by path, size and modification time (an edited file is
uploaded again); a restart uploads each file once more. A file id Telegram no longer takes is
forgotten and the album sent again from the files.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

from loguru import logger
from pyrogram import Client, types

from flick.errors import TelegramRefused
from flick.media import SampleKind, VideoMeta, describe_video, gif_to_mp4_sync
from flick.ports import AlbumItem
from flick.private_files import private_dir

Lane = Callable[[int, str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
FileKey = tuple[str, int, int, bool]
Grouped = (
    types.InputMediaPhoto | types.InputMediaVideo | types.InputMediaAudio | types.InputMediaDocument
)
Input = types.InputMediaPhoto | types.InputMediaVideo | types.InputMediaAnimation

#: Telegram's limit of items in one album.
ALBUM_MAX: Final = 10
_STALE: Final = frozenset(
    {"FILE_REFERENCE_EXPIRED", "FILE_REFERENCE_INVALID", "FILE_ID_INVALID", "MEDIA_EMPTY"}
)
_MEDIA_KINDS: Final = ("photo", "video", "animation", "document")


class AlbumSender:
    def __init__(self, client: Client, tmp_dir: Path | None = None) -> None:
        self.client = client
        self.tmp_dir = tmp_dir
        self.file_ids: dict[FileKey, str] = {}

    async def send(self, chat_id: int, items: Sequence[AlbumItem], in_lane: Lane) -> None:
        for start in range(0, len(items), ALBUM_MAX):
            chunk = items[start : start + ALBUM_MAX]
            # A GIF alone goes as an animation, in an album as a video: two different files.
            alone = len(chunk) == 1
            keys = [await asyncio.to_thread(_key, item.path, alone) for item in chunk]
            try:
                await self._send(chat_id, chunk, keys, in_lane)
            except TelegramRefused as exc:
                if exc.error_id not in _STALE or not any(k in self.file_ids for k in keys):
                    raise
                logger.info("a sample's file id is no longer usable ({}); uploading", exc)
                for key in keys:
                    self.file_ids.pop(key, None)
                await self._send(chat_id, chunk, keys, in_lane)

    async def _send(
        self, chat_id: int, chunk: Sequence[AlbumItem], keys: list[FileKey], in_lane: Lane
    ) -> None:
        single = len(chunk) == 1
        temporary: list[Path] = []  # a GIF's MP4, a thumbnail: named like the spool's files,
        try:  # so a killed process's leftovers go at the next start (transfer.remove_leftovers)
            media = [
                await self._input(item, self.file_ids.get(key), single, temporary)
                for item, key in zip(chunk, keys, strict=True)
            ]
            if single:
                sent = [await in_lane(chat_id, "sample", lambda: self._one(chat_id, media[0]))]
            else:
                # Photos and videos only (`_input` makes no animation for an album).
                group: list[Grouped] = [
                    m for m in media if not isinstance(m, types.InputMediaAnimation)
                ]
                sent = await in_lane(
                    chat_id, "samples", lambda: self.client.send_media_group(chat_id, group)
                )
        finally:
            for path in temporary:
                await asyncio.to_thread(path.unlink, True)
        for key, message in zip(keys, sent or [], strict=False):
            file_id = _file_id(message)
            if file_id:
                self.file_ids[key] = file_id

    async def _temporary(self, suffix: str, temporary: list[Path]) -> Path:
        if self.tmp_dir is not None:
            await asyncio.to_thread(private_dir, self.tmp_dir)
        fd, name = await asyncio.to_thread(tempfile.mkstemp, suffix, "flick-upload-", self.tmp_dir)
        os.close(fd)
        temporary.append(Path(name))
        return Path(name)

    async def _input(
        self, item: AlbumItem, file_id: str | None, single: bool, temporary: list[Path]
    ) -> Input:
        kind, caption = item.kind, item.caption
        if kind is SampleKind.PHOTO:
            return types.InputMediaPhoto(file_id or str(item.path), caption=caption)
        if kind is SampleKind.ANIMATION and single:
            return types.InputMediaAnimation(file_id or str(item.path), caption=caption)
        if file_id:
            return types.InputMediaVideo(file_id, caption=caption)
        path = item.path
        if await asyncio.to_thread(_is_gif, path):  # an album takes no GIF: its silent MP4
            path = await self._temporary(".mp4", temporary)
            await asyncio.to_thread(gif_to_mp4_sync, item.path, path)
        meta: VideoMeta = await describe_video(path)
        thumb = None
        if meta.thumb is not None:
            thumb = await self._temporary(".jpg", temporary)
            await asyncio.to_thread(thumb.write_bytes, meta.thumb)
        return types.InputMediaVideo(
            str(path),
            caption=caption,
            thumb=str(thumb) if thumb is not None else None,
            width=meta.info.width,
            height=meta.info.height,
            duration=round(meta.info.duration),
            supports_streaming=True,
        )

    async def _one(self, chat_id: int, media: Input) -> Any:
        source = media.media
        assert source is not None
        if isinstance(media, types.InputMediaPhoto):
            return await self.client.send_photo(chat_id, source, caption=media.caption)
        if isinstance(media, types.InputMediaAnimation):
            return await self.client.send_animation(chat_id, source, caption=media.caption)
        return await self.client.send_video(
            chat_id,
            source,
            caption=media.caption,
            width=media.width,
            height=media.height,
            duration=media.duration,
            thumb=media.thumb,
            supports_streaming=True,
        )


def _key(path: Path, alone: bool) -> FileKey:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, alone)


def _is_gif(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == b"GIF8"


def _file_id(message: Any) -> str | None:
    for kind in _MEDIA_KINDS:
        media = getattr(message, kind, None)
        if media is not None and getattr(media, "file_id", None):
            file_id: str = media.file_id
            return file_id
    return None


__all__ = ["ALBUM_MAX", "AlbumSender"]
