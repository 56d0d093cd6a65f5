"""Each refused photo names its real reason (#15): too many pixels (decompression bombs included)
is "too large (N megapixels, the limit is M)", never "not a photo"; an animated image, a format
Flick does not take and a damaged image each get their own words. (Too many bytes, too small, a
side too long, not an image at all and a file that is not an image are in test_bad_input.)

Every refusal leaves the conversation and the money as they were, and the next good photo works.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Awaitable, Callable

import pytest
from PIL import Image

from flick import events as ev
from flick.i18n import t
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools

Harness = Callable[..., Awaitable[EngineHarness]]
UID = 7201


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims this size, with almost no pixel data: a decompression bomb's
    shape (a real one compresses gigapixels of one colour into a few kilobytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (100, 100), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:])
    return out.getvalue()


def still(fmt: str, size: tuple[int, int] = (100, 100)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "red").save(out, fmt)
    return out.getvalue()


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200


async def refused_with(
    h: EngineHarness, tools: EngineTools, data: bytes, uid: int = UID, lang: str = "en"
) -> str:
    """Send `data` as an image file to a user holding one photo; the reply, after checking that
    nothing changed and that a good photo still makes the video."""
    if not tools.texts(h, uid):
        await h.send(ev.Command(h.user(uid, lang), h.next_id(), "start"))  # first contact
        await tools.to_photos(h, uid)
        await h.photo(uid, tools.jpeg("green"))
        await h.settle()
    before = await tools.snapshot(h, uid)
    event: ev.Photo = tools.photo_event(h, uid, data, document=True)
    await h.send(ev.Photo(h.user(uid, lang), event.event_id, event.photo))
    await h.settle()
    reply: str = tools.texts(h, uid)[-1]
    assert await tools.snapshot(h, uid) == before
    return reply


async def test_decompression_bomb_is_too_large_not_a_non_photo(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness()
    reply = await refused_with(h, tools, png_header(20_000, 20_000))
    assert reply == t("en", "photo_too_many_pixels", pixels_mp="400", limit_mp="36")
    reply = await refused_with(h, tools, png_header(7_000, 7_000))  # past ours, under Pillow's
    assert reply == t("en", "photo_too_many_pixels", pixels_mp="49", limit_mp="36")
    await h.photo(UID, tools.jpeg("blue"))
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1


async def test_too_many_pixels_in_the_users_language(harness: Harness, tools: EngineTools) -> None:
    h = await harness(max_photo_side=400)  # 0.16 megapixels
    real = still("PNG", (600, 600))  # 0.36 megapixels, every side over 64
    reply = await refused_with(h, tools, real, uid=UID + 1, lang="ru")
    assert reply == t("ru", "photo_too_many_pixels", pixels_mp="0,4", limit_mp="0,2")


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
async def test_animated_image(harness: Harness, tools: EngineTools, fmt: str) -> None:
    h = await harness()
    assert await refused_with(h, tools, animated(fmt)) == t("en", "photo_animated")


@pytest.mark.parametrize(
    ("data", "name"),
    [
        pytest.param(HEIC, "HEIC", id="heic"),
        pytest.param(still("BMP"), "BMP", id="bmp"),
        pytest.param(still("GIF"), "GIF", id="still-gif"),
    ],
)
async def test_image_in_a_format_flick_does_not_take(
    harness: Harness, tools: EngineTools, data: bytes, name: str
) -> None:
    h = await harness()
    assert await refused_with(h, tools, data) == t("en", "photo_format", format=name)


async def test_damaged_png(harness: Harness, tools: EngineTools) -> None:
    h = await harness()
    whole = still("PNG", (300, 300))
    broken = whole[:60] + b"\x00" * 40 + whole[100:]  # header intact, pixel data spoiled
    assert await refused_with(h, tools, broken) == t("en", "photo_damaged", format="PNG")


async def test_multi_picture_jpeg_is_a_photo_not_an_animation(
    harness: Harness, tools: EngineTools
) -> None:
    """An MPO (a JPEG holding several pictures, from some cameras and phones) is taken: its
    first picture is the photo."""
    h = await harness()
    await tools.to_photos(h, UID)
    await h.photo(UID, tools.jpeg("green"))
    await h.settle()
    frames = [Image.new("RGB", (100, 100), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "MPO", save_all=True, append_images=frames[1:])
    await h.send(tools.photo_event(h, UID, out.getvalue(), document=True))
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    key = await pool().fetchval('SELECT photo2_key FROM generations WHERE "user" = $1', UID)
    storage = h.app.storage
    assert storage is not None
    with Image.open(io.BytesIO(await storage.get(key))) as img:
        assert img.convert("RGB").getpixel((50, 50)) == pytest.approx((254, 0, 0), abs=3)
