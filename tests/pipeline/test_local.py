"""The offline providers, with real Pillow and the real bundled ffmpeg."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import imageio_ffmpeg
import psutil
import pytest
from PIL import Image

from flick.errors import FinalError
from flick.pipeline.local import LocalImageProvider, LocalVideoProvider, decode_photo, style_colour
from flick.ports import Prediction


def jpeg(size: tuple[int, int], colour: tuple[int, int, int], orientation: int = 1) -> bytes:
    img = Image.new("RGB", size, colour)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (0, 0, 255, 128)).save(out, format="PNG")
    return out.getvalue()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def wait_for(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def finish(video: LocalVideoProvider, prediction_id: str) -> Prediction:
    result: list[Prediction] = []

    async def done() -> bool:
        result[:] = [await video.poll(prediction_id)]
        return result[0].status in ("succeeded", "failed", "canceled")

    await wait_for(done)
    return result[0]


def ffmpeg_children(work_dir: Path) -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        with_dir = False
        try:
            with_dir = any(str(work_dir) in arg for arg in child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if with_dir:
            found.append(child)
    return found


PHOTOS = [jpeg((120, 160), (200, 30, 30)), jpeg((160, 120), (30, 200, 30))]


def long_renders(work_dir: Path) -> LocalVideoProvider:
    # A minute of video: ffmpeg is certainly still running when the test interrupts it.
    return LocalVideoProvider(work_dir, duration=60.0, fps=24, width=720, max_concurrent=2)


async def test_compose_makes_a_portrait_png_per_style() -> None:
    images = LocalImageProvider(size=(300, 400))
    romantic = await images.compose(PHOTOS, "prompt", "romantic")
    again = await images.compose(PHOTOS, "prompt", "romantic")
    kiss = await images.compose(PHOTOS, "prompt", "kiss")
    unknown = await images.compose([*PHOTOS, png((50, 50))], "prompt", "zorbing")

    assert romantic.content_type == "image/png" and romantic.cost == {}
    for result in (romantic, kiss, unknown):
        with Image.open(io.BytesIO(result.data)) as img:
            assert img.format == "PNG" and img.size == (300, 400)
    assert romantic.data == again.data
    assert romantic.data != kiss.data
    assert style_colour("zorbing") == style_colour(" Zorbing ") != style_colour("kiss")
    await images.check()


async def test_compose_rejects_an_undecodable_photo() -> None:
    images = LocalImageProvider()
    for bad in (b"not an image", PHOTOS[0][:200], b""):
        with pytest.raises(FinalError) as caught:
            await images.compose([PHOTOS[0], bad], "prompt", "hug")
        assert caught.value.kind == "invalid_image"
        assert caught.value.user_reason == "bad_photo"
    with pytest.raises(FinalError):
        await images.compose([], "prompt", "hug")


def test_decode_photo_honours_exif_orientation() -> None:
    # Stored landscape, tagged "rotate 90°": the person is standing.
    img = decode_photo(jpeg((80, 40), (0, 0, 0), orientation=6), (400, 400))
    assert img.height > img.width and img.mode == "RGB"


async def test_video_renders_an_mp4(tmp_path: Path) -> None:
    composed = await LocalImageProvider(size=(300, 400)).compose(PHOTOS, "p", "dance")
    async with LocalVideoProvider(tmp_path, duration=1.0, fps=12, width=241) as video:
        await video.check()
        prediction_id = await video.start(composed.data, composed.content_type, {})
        assert (await video.poll(prediction_id)).status in ("starting", "processing")
        done = await finish(video, prediction_id)
        assert done.status == "succeeded", done.error
        assert done.output_url == (tmp_path / f"{prediction_id}.mp4").as_uri()
        assert done.predict_time is not None and done.predict_time > 0

        chunks = [chunk async for chunk in video.open_output(done)]
        data = b"".join(chunks)
        assert data[4:8] == b"ftyp"
        assert all(len(chunk) <= 64 * 1024 for chunk in chunks)
        frames, _secs = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / f"{prediction_id}.mp4"))
        assert frames > 0
        assert files(tmp_path) == [f"{prediction_id}.mp4"]


async def test_video_fails_readably_on_a_bad_image(tmp_path: Path) -> None:
    async with LocalVideoProvider(tmp_path) as video:
        done = await finish(video, await video.start(b"garbage", "image/png", {}))
        assert done.status == "failed"
        assert done.error is not None and "cannot decode image" in done.error
        with pytest.raises(FinalError):
            [chunk async for chunk in video.open_output(done)]
    assert files(tmp_path) == []


async def test_cancel_mid_render_leaves_no_files(tmp_path: Path) -> None:
    async with long_renders(tmp_path) as video:
        prediction_id = await video.start(PHOTOS[0], "image/jpeg", {})
        part = tmp_path / f"{prediction_id}.mp4.part"

        async def rendering() -> bool:
            return part.exists()

        await wait_for(rendering)
        assert (await video.poll(prediction_id)).status == "processing"
        await video.cancel(prediction_id)
        assert files(tmp_path) == []
        assert (await video.poll(prediction_id)).status == "canceled"
        assert ffmpeg_children(tmp_path) == []
        await video.cancel(prediction_id)
        await video.cancel("nonsense/../id")
        # Cancelled before its task ever ran.
        queued = await video.start(PHOTOS[0], "image/jpeg", {})
        await video.cancel(queued)
        assert (await video.poll(queued)).status == "canceled"
        assert files(tmp_path) == []


async def test_restart_finds_finished_and_reports_lost(tmp_path: Path) -> None:
    first = LocalVideoProvider(tmp_path, duration=0.5, width=160)
    finished = await first.start(PHOTOS[0], "image/jpeg", {})
    assert (await finish(first, finished)).status == "succeeded"
    interrupted = await first.start(PHOTOS[1], "image/jpeg", {})
    await first.close()  # the process stops before this render is published
    with pytest.raises(RuntimeError):
        await first.start(PHOTOS[1], "image/jpeg", {})
    # A process that crashed mid-render leaves a part file behind.
    crashed = uuid.uuid4().hex
    (tmp_path / f"{crashed}.mp4.part").write_bytes(b"half a video")

    second = LocalVideoProvider(tmp_path)
    found = await second.poll(finished)
    assert found.status == "succeeded" and found.output_url is not None
    assert b"".join([c async for c in second.open_output(found)])[4:8] == b"ftyp"
    for lost in (interrupted, crashed, "../../etc/passwd"):
        assert await second.poll(lost) == Prediction(id=lost, status="failed", error="lost")
    assert files(tmp_path) == [f"{finished}.mp4"]
    await second.close()


async def test_close_stops_every_ffmpeg(tmp_path: Path) -> None:
    video = long_renders(tmp_path)
    ids = [await video.start(PHOTOS[i % 2], "image/jpeg", {}) for i in range(3)]

    async def two_running() -> bool:
        return len(ffmpeg_children(tmp_path)) == 2

    await wait_for(two_running)
    # The third waits for a slot rather than competing for the same cores.
    assert [(await video.poll(i)).status for i in ids] == ["processing", "processing", "starting"]
    await video.close()
    assert ffmpeg_children(tmp_path) == []
    assert files(tmp_path) == []


async def test_latency_delays_the_finish(tmp_path: Path) -> None:
    async with LocalVideoProvider(tmp_path, latency=0.4, duration=0.5, width=64) as video:
        started = time.monotonic()
        done = await finish(video, await video.start(PHOTOS[0], "image/jpeg", {}))
        assert done.status == "succeeded"
        assert time.monotonic() - started >= 0.4
