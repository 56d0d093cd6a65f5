"""Media as Telegram describes it: photo dimensions, and the kinds of message the bot refuses."""

from __future__ import annotations

import io
import time
from typing import Any, Final

from PIL import Image

from flick.testing.telegram.file_store import FileStore
from flick.testing.telegram.wire import raw

MEDIA_KINDS: Final = (
    "sticker",
    "voice",
    "video",
    "video_note",
    "audio",
    "animation",
    "location",
    "contact",
    "dice",
)


def image_size(data: bytes, default: tuple[int, int] = (1280, 960)) -> tuple[int, int]:
    """Width and height of an image, read the way Telegram would; `default` if not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.width), int(image.height)
    except (OSError, ValueError):  # not an image Pillow knows (UnidentifiedImageError is OSError)
        return default


def new_chat(raw_id: int, kind: str, title: str) -> Any:
    """A basic group ("group"), or a channel: "supergroup" (megagroup) or "channel" (broadcast)."""
    if kind == "group":
        return raw.types.Chat(
            id=raw_id,
            title=title,
            photo=raw.types.ChatPhotoEmpty(),
            participants_count=5,
            date=int(time.time()),
            version=1,
        )
    return raw.types.Channel(
        id=raw_id,
        title=title,
        photo=raw.types.ChatPhotoEmpty(),
        date=int(time.time()),
        access_hash=raw_id * 7 % (1 << 62),
        megagroup=kind == "supergroup" or None,
        broadcast=kind == "channel" or None,
    )


def unsupported_media(files: FileStore, kind: str) -> Any:
    """The raw MessageMedia of one of MEDIA_KINDS, its file (if any) stored in `files`."""
    if kind == "location":
        return raw.types.MessageMediaGeo(
            geo=raw.types.GeoPoint(long=37.62, lat=55.75, access_hash=1)
        )
    if kind == "contact":
        return raw.types.MessageMediaContact(
            phone_number="+10000000000", first_name="Bob", last_name="", vcard="", user_id=0
        )
    if kind == "dice":
        return raw.types.MessageMediaDice(value=3, emoticon="🎲")
    mime, attributes, flags = _DOCUMENTS[kind]()
    doc = files.add_document(b"\0" * 2048, mime, attributes)
    return raw.types.MessageMediaDocument(document=doc, **flags)


def _sticker() -> tuple[str, list[Any], dict[str, bool]]:
    return (
        "image/webp",
        [
            raw.types.DocumentAttributeImageSize(w=512, h=512),
            raw.types.DocumentAttributeSticker(
                alt="🙂", stickerset=raw.types.InputStickerSetEmpty()
            ),
        ],
        {},
    )


def _voice() -> tuple[str, list[Any], dict[str, bool]]:
    return "audio/ogg", [raw.types.DocumentAttributeAudio(duration=3, voice=True)], {"voice": True}


def _video() -> tuple[str, list[Any], dict[str, bool]]:
    return (
        "video/mp4",
        [
            raw.types.DocumentAttributeVideo(duration=5.0, w=640, h=360),
            raw.types.DocumentAttributeFilename(file_name="clip.mp4"),
        ],
        {"video": True},
    )


def _video_note() -> tuple[str, list[Any], dict[str, bool]]:
    attribute = raw.types.DocumentAttributeVideo(duration=5.0, w=240, h=240, round_message=True)
    return "video/mp4", [attribute], {"round": True}


def _audio() -> tuple[str, list[Any], dict[str, bool]]:
    return (
        "audio/mpeg",
        [
            raw.types.DocumentAttributeAudio(duration=180, title="Song", performer="Band"),
            raw.types.DocumentAttributeFilename(file_name="song.mp3"),
        ],
        {},
    )


def _animation() -> tuple[str, list[Any], dict[str, bool]]:
    return (
        "video/mp4",
        [
            raw.types.DocumentAttributeAnimated(),
            raw.types.DocumentAttributeVideo(duration=2.0, w=320, h=240),
        ],
        {},
    )


_DOCUMENTS: Final = {
    "sticker": _sticker,
    "voice": _voice,
    "video": _video,
    "video_note": _video_note,
    "audio": _audio,
    "animation": _animation,
}
