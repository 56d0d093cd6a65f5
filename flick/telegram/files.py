"""Files between storage, Telegram and the disk: keyboards too, the other thing sends carry."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Final

from pyrogram import types

from flick.ports import Button, Keyboard, Storage
from flick.private_files import private_dir

#: Telegram's upload limit for a bot over MTProto (kurigram refuses anything larger).
MAX_UPLOAD_BYTES: Final = 2000 * 1024 * 1024
#: Telegram's limit on callback data.
MAX_CALLBACK_BYTES: Final = 64


def inline_markup(keyboard: Keyboard | None) -> types.InlineKeyboardMarkup | None:
    """The inline keyboard for `keyboard` (callback or URL buttons); None for none."""
    rows = [[_button(button) for button in row] for row in keyboard or () if row]
    return types.InlineKeyboardMarkup(rows) if rows else None


def _button(button: Button) -> types.InlineKeyboardButton:
    text, url, data = button.text, button.url, button.data
    if url:
        return types.InlineKeyboardButton(text, url=url)
    if data is None:
        raise ValueError(f"button {text!r} has neither callback data nor a URL")
    if len(data.encode()) > MAX_CALLBACK_BYTES:
        # Telegram would refuse the whole message (BUTTON_DATA_INVALID); say which button.
        raise ValueError(f"callback data of button {text!r} is over {MAX_CALLBACK_BYTES} bytes")
    return types.InlineKeyboardButton(text, callback_data=data)


async def spool(storage: Storage, key: str, directory: Path | None = None) -> Path:
    """Copy a stored object into a temporary file, chunk by chunk; the caller deletes it.

    Videos can be large (MTProto takes up to 2 GB), so the object never sits whole in memory;
    kurigram then uploads from the file in parts.
    """
    if directory is not None:
        await asyncio.to_thread(private_dir, directory)  # users' photos and videos
    suffix = Path(key).suffix or ".bin"
    fd, name = await asyncio.to_thread(
        tempfile.mkstemp, prefix="flick-upload-", suffix=suffix, dir=directory
    )
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            written = 0
            async for chunk in storage.stream(key):
                written += len(chunk)
                if written > MAX_UPLOAD_BYTES:
                    raise ValueError(f"{key} is larger than Telegram's {MAX_UPLOAD_BYTES} bytes")
                # Disk writes off the event loop: a slow disk must not stall every chat.
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return path
