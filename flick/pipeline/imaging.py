"""Photo intake: check what the user sent by its content (not its name) and store it as JPEG."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = {"JPEG", "PNG", "WEBP", "MPO"}
# A multi-picture JPEG (some cameras and phones, e.g. a stereo pair): Pillow reports it as
# animated, but its first picture is the photo.
STILL_WITH_FRAMES = {"MPO"}


# HEIC/HEIF/AVIF (an iPhone's photo sent "as a file"): Pillow cannot identify them without a
# plugin, and "not an image" would be the wrong reason. Their ISO-BMFF `ftyp` box names the brand
# in bytes 8-12; a dependency to read four bytes is not worth its weight.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
# Pillow refuses a decompression bomb before we see its size; it is only in the message.
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


class PhotoRejected(Exception):  # noqa: N818 - an answer for the user, not a failure
    def __init__(self, reason: str, **values: str | int) -> None:
        super().__init__(reason)
        self.reason = reason  # a catalog key
        self.values = values  # its placeholders (sizes, a format name)


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
    """Each refusal names its real reason: the content is not an image; an image in a format
    we do not take (GIF, BMP, HEIC, ...); animated; too many pixels (decompression bombs
    included); a side too long or too short; or an image of ours that will not decode."""
    try:
        probe = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        found = _BOMB_PIXELS.search(str(exc))
        pixels = int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1
        raise PhotoRejected(
            "photo_too_many_pixels", pixels=pixels, limit=limits.max_side**2
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        brand = data[8:12] if data[4:8] == b"ftyp" else b""
        if brand in _HEIF_BRANDS or brand in _AVIF_BRANDS:
            name = "HEIC" if brand in _HEIF_BRANDS else "AVIF"
            raise PhotoRejected("photo_format", format=name) from None
        raise PhotoRejected("photo_not_image") from None
    with probe:
        kind = probe.format or "?"
        width, height = probe.size
        animated = bool(getattr(probe, "is_animated", False)) and kind not in STILL_WITH_FRAMES
    if animated:
        raise PhotoRejected("photo_animated")
    if kind not in ACCEPTED:
        raise PhotoRejected("photo_format", format=kind)
    if width * height > limits.max_side**2:
        raise PhotoRejected(
            "photo_too_many_pixels", pixels=width * height, limit=limits.max_side**2
        )
    if max(width, height) > limits.max_side:
        raise PhotoRejected("photo_too_large_pixels", side=limits.max_side)
    if min(width, height) < limits.min_side:
        raise PhotoRejected("photo_too_small")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # a truncated file fails here, not later at the provider
            upright = ImageOps.exif_transpose(img).convert("RGB")
            out = io.BytesIO()
            upright.save(out, "JPEG", quality=92)
            return out.getvalue()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        # It said it was a JPEG/PNG/WebP of a sane size, and its data does not decode.
        raise PhotoRejected("photo_damaged", format="JPEG" if kind == "MPO" else kind) from None


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
