"""Photo intake: check what the user sent by its content (not its name) and store it as JPEG."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = {"JPEG", "PNG", "WEBP"}


class PhotoRejected(Exception):  # noqa: N818 - an answer for the user, not a failure
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # a catalog key


@dataclass(frozen=True)
class PhotoLimits:
    max_bytes: int
    max_side: int
    min_side: int


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > max_bytes:
            raise PhotoRejected("photo_too_big")
    return bytes(buf)


def _normalize(data: bytes, limits: PhotoLimits) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            width, height = probe.size
        if kind not in ACCEPTED:
            raise PhotoRejected("photo_not_image")
        if max(width, height) > limits.max_side or width * height > limits.max_side**2:
            raise PhotoRejected("photo_too_large_pixels")
        if min(width, height) < limits.min_side:
            raise PhotoRejected("photo_too_small")
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # a truncated file fails here, not later at the provider
            upright = ImageOps.exif_transpose(img).convert("RGB")
            out = io.BytesIO()
            upright.save(out, "JPEG", quality=92)
            return out.getvalue()
    except PhotoRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise PhotoRejected("photo_not_image") from None


def _to_jpeg(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=92)
        return out.getvalue()


async def to_jpeg(data: bytes) -> bytes:
    """The combined image as JPEG, as the storage layout promises (`combined/….jpg`)."""
    return await asyncio.to_thread(_to_jpeg, data)


async def normalize(data: bytes, limits: PhotoLimits) -> bytes:
    """A JPEG of the photo with its EXIF rotation applied (and the rest of EXIF dropped)."""
    return await asyncio.to_thread(_normalize, data, limits)


def with_comment(jpeg: bytes, text: str) -> bytes:
    """`jpeg` with a comment segment (COM) holding `text` after its APPn segments: the same
    pixels, other bytes. Not a JPEG, or one whose segments do not parse: returned as it is."""
    payload = text.encode("utf-8")
    if not jpeg.startswith(b"\xff\xd8") or len(payload) > 0xFFFF - 2:
        return jpeg
    at = 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and 0xE0 <= jpeg[at + 1] <= 0xEF:
        length = int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if length < 2:
            return jpeg
        at += 2 + length
    if at + 2 > len(jpeg) or jpeg[at] != 0xFF:
        return jpeg
    segment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:at] + segment + jpeg[at:]
