"""Offline providers: Pillow composes the picture, the bundled ffmpeg animates it.

Used by `flick chat` without AI keys, by tests and benchmarks, and as an optional fallback. They
implement `ImageProvider` and `VideoProvider` for real (files, processes, failures); only the
"AI" is a collage and a slow zoom.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import re
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import imageio_ffmpeg
from loguru import logger
from PIL import (
    Image,
    ImageDraw,
    ImageOps,
    WebPImagePlugin,  # noqa: F401 - Image.open(formats=...) needs WebP registered; not preloaded
)

from flick.errors import FinalError, ServiceError
from flick.ports import ComposedImage, Prediction, PredictionStatus
from flick.private_files import private_dir

__all__ = ["LocalImageProvider", "LocalVideoProvider", "decode_photo", "style_colour"]

# Telegram photos are JPEG; documents from phones may be PNG, WebP or MPO (which JPEG's opener
# handles). Naming the formats keeps Pillow's other, less hardened decoders away from user bytes.
_FORMATS = ("JPEG", "PNG", "WEBP")
_CHUNK = 64 * 1024
_ID = re.compile(r"[0-9a-f]{32}")
_MAX_OUTCOMES = 1024

_STYLE_COLOURS: dict[str, tuple[int, int, int]] = {
    "romantic": (255, 105, 180),
    "hug": (255, 140, 0),
    "kiss": (220, 20, 60),
    "dance": (138, 43, 226),
}


def style_colour(style: str) -> tuple[int, int, int]:
    """The tint of a style: fixed for the known ones, from a stable hash for the rest."""
    key = style.strip().lower()
    if key in _STYLE_COLOURS:
        return _STYLE_COLOURS[key]
    # sha256, not hash(): Python salts str hashes per process, and the colour must not change.
    r, g, b = hashlib.sha256(key.encode()).digest()[:3]
    return r, g, b


def decode_photo(data: bytes, box: tuple[int, int]) -> Image.Image:
    """Decode, shrink to fit `box` and turn upright. Raises FinalError for anything undecodable."""
    try:
        img: Image.Image = Image.open(io.BytesIO(data), formats=_FORMATS)
        side = max(box)
        # Shrink before rotating: JPEG draft decodes at 1/2..1/8 scale, so a 12 MP photo costs
        # a fraction of the memory; a square bound still fits after a 90° EXIF turn.
        img.draft("RGB", (side, side))
        img.thumbnail((side, side))
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            img = Image.new("RGB", rgba.size, (255, 255, 255))
            img.paste(rgba, mask=rgba.getchannel("A"))
        img = ImageOps.contain(img.convert("RGB"), box)
    # Hostile or truncated files make Pillow raise OSError, ValueError, SyntaxError, EOFError,
    # DecompressionBombError...; every one of them means the same thing to the user.
    except Exception as exc:
        raise FinalError(
            f"cannot decode image: {exc}", kind="invalid_image", user_reason="bad_photo"
        ) from exc
    return img


class LocalImageProvider:
    name: str = "local"

    def __init__(self, size: tuple[int, int] = (768, 1024), margin: int = 24) -> None:
        self._size = size
        self._margin = margin

    async def compose(self, photos: Sequence[bytes], prompt: str, style: str) -> ComposedImage:
        if not photos:
            raise FinalError("no photos to compose", kind="invalid_image", user_reason="bad_photo")
        data = await asyncio.to_thread(self._compose, list(photos), style)
        return ComposedImage(data=data, content_type="image/png", cost={})

    async def check(self) -> None:
        return None

    def _compose(self, photos: list[bytes], style: str) -> bytes:
        width, height = self._size
        m, n = self._margin, len(photos)
        colour = style_colour(style)
        cell_w = max(1, (width - m * (n + 1)) // n)
        cell_h = max(1, height - 2 * m)
        images = [decode_photo(p, (cell_w, cell_h)) for p in photos]

        canvas = Image.new("RGB", self._size, tuple(c // 4 for c in colour))
        for i, img in enumerate(images):
            x = m + i * (cell_w + m) + (cell_w - img.width) // 2
            canvas.paste(img, (x, (height - img.height) // 2))
        canvas = Image.blend(canvas, Image.new("RGB", self._size, colour), 0.18)
        ImageDraw.Draw(canvas).rectangle(
            (0, 0, width - 1, height - 1), outline=colour, width=max(2, m // 2)
        )
        out = io.BytesIO()
        canvas.save(out, format="PNG", compress_level=3)
        return out.getvalue()


class LocalVideoProvider:
    """Renders each prediction to `work_dir/{id}.mp4` with an ffmpeg subprocess.

    The file system is the record: a finished `.mp4` survives a restart, a render the process lost
    is reported as failed. Failures and cancellations are remembered in memory only. One provider
    per work_dir: polling treats part files it did not start as orphans and removes them.
    """

    name: str = "local"

    def __init__(
        self,
        work_dir: Path,
        *,
        latency: float = 0.0,
        duration: float = 2.0,
        fps: int = 12,
        width: int = 480,
        max_concurrent: int = 2,
        render_timeout: float = 120.0,
    ) -> None:
        if duration <= 0 or fps <= 0 or width < 16:
            raise ValueError("duration and fps must be positive and width at least 16")
        self._dir = work_dir
        private_dir(self._dir)
        self._latency = latency
        self._frames = max(1, round(duration * fps))
        self._fps = fps
        self._width = width - width % 2  # yuv420p needs even dimensions
        self._timeout = render_timeout
        # ffmpeg uses every core it sees; more renders at once than cores only slows all of them.
        self._slots = asyncio.Semaphore(max_concurrent)
        self._ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._rendering: set[str] = set()
        self._outcomes: dict[str, Prediction] = {}
        self._closed = False

    async def __aenter__(self) -> LocalVideoProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(
        self,
        image: bytes | None,
        content_type: str,
        inputs: Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> str:
        """Queue a render. `content_type`, `model` and the plain inputs are ignored: Pillow sniffs
        the format, and duration, fps and size are this provider's own settings. A direct route
        sends no `image`: its first photo (an input given as bytes) is animated instead."""
        if image is None:
            image = _first_picture(inputs)
        if self._closed:
            raise RuntimeError("LocalVideoProvider is closed")
        prediction_id = uuid.uuid4().hex
        self._tasks[prediction_id] = asyncio.create_task(
            self._render(prediction_id, image), name=f"local-video-{prediction_id}"
        )
        return prediction_id

    async def find_accepted(
        self,
        image: bytes | None,
        content_type: str,
        inputs: Mapping[str, Any],
        *,
        since: datetime,
        skip: Collection[str] = (),
        model: str | None = None,
    ) -> str | None:
        """Always None: `start` answers at once, in process, so no answer is ever lost, and a
        render whose process died is lost with it (polling reports it failed)."""
        return None

    async def poll(self, prediction_id: str) -> Prediction:
        if prediction_id in self._tasks:
            status: PredictionStatus = (
                "processing" if prediction_id in self._rendering else "starting"
            )
            return Prediction(id=prediction_id, status=status)
        if _ID.fullmatch(prediction_id):
            final = self._path(prediction_id)
            if final.exists():
                done = self._outcomes.get(prediction_id)
                return Prediction(
                    id=prediction_id,
                    status="succeeded",
                    output_url=final.resolve().as_uri(),
                    predict_time=done.predict_time if done else None,
                )
            if prediction_id in self._outcomes:
                return self._outcomes[prediction_id]
            # A render another process started and never finished: its part file is an orphan.
            _unlink(self._path(prediction_id, part=True))
        return Prediction(id=prediction_id, status="failed", error="lost")

    async def open_output(self, prediction: Prediction) -> AsyncIterator[bytes]:
        if not _ID.fullmatch(prediction.id):
            raise FinalError(f"unknown prediction {prediction.id!r}", kind="missing_output")
        try:
            f = await asyncio.to_thread(self._path(prediction.id).open, "rb")
        except FileNotFoundError as exc:
            raise FinalError(f"video {prediction.id} is missing", kind="missing_output") from exc
        try:
            chunk = await asyncio.to_thread(f.read, _CHUNK)
            if chunk[4:8] != b"ftyp":
                raise FinalError(f"video {prediction.id} is not an MP4", kind="invalid_output")
            while chunk:
                yield chunk
                chunk = await asyncio.to_thread(f.read, _CHUNK)
        finally:
            f.close()

    async def cancel(self, prediction_id: str) -> None:
        task = self._tasks.get(prediction_id)
        if task is None:
            return
        task.cancel()
        # wait() neither raises the task's CancelledError nor cancels the task if we are cancelled.
        await asyncio.wait({task})
        # A task cancelled before its first step never runs its own clean-up.
        self._tasks.pop(prediction_id, None)
        self._remember(Prediction(id=prediction_id, status="canceled"))

    async def check(self) -> None:
        if not await asyncio.to_thread(Path(self._ffmpeg).is_file):
            raise ServiceError(f"ffmpeg not found at {self._ffmpeg}", setting="IMAGEIO_FFMPEG_EXE")
        if not await asyncio.to_thread(self._dir.is_dir):
            raise ServiceError(f"work directory {self._dir} is missing")

    async def close(self) -> None:
        """Cancel every render and wait for its ffmpeg to exit and its files to be removed."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()

    def _path(self, prediction_id: str, *, part: bool = False) -> Path:
        return self._dir / f"{prediction_id}.mp4{'.part' if part else ''}"

    def _remember(self, prediction: Prediction) -> None:
        self._outcomes[prediction.id] = prediction
        # Outcomes are kept for a while so the caller can poll; a long-running chat must not grow.
        while len(self._outcomes) > _MAX_OUTCOMES:
            del self._outcomes[next(iter(self._outcomes))]

    async def _render(self, prediction_id: str, image: bytes) -> None:
        part, final = self._path(prediction_id, part=True), self._path(prediction_id)
        started = time.monotonic()
        try:
            async with self._slots:
                self._rendering.add(prediction_id)
                raw, src, out = await asyncio.to_thread(_prepare, image, self._width)
                async with asyncio.timeout(self._timeout):
                    await self._run_ffmpeg(raw, src, out, part)
            if self._latency > 0:
                await asyncio.sleep(self._latency)
            # Rename last: a reader (or the next process) only ever sees a whole file.
            part.replace(final)
            elapsed = time.monotonic() - started
            self._remember(Prediction(id=prediction_id, status="succeeded", predict_time=elapsed))
            logger.info("local video {} rendered in {:.2f}s", prediction_id, elapsed)
        except asyncio.CancelledError:
            _unlink(part)
            logger.info("local video {} canceled", prediction_id)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure ends the prediction as failed
            _unlink(part)
            if isinstance(exc, TimeoutError):
                error = f"render took longer than {self._timeout:g}s"
            else:
                error = str(exc) if isinstance(exc, FinalError) else f"render failed: {exc}"
            self._remember(Prediction(id=prediction_id, status="failed", error=error))
            logger.warning("local video {} failed: {}", prediction_id, error)
        finally:
            self._rendering.discard(prediction_id)
            self._tasks.pop(prediction_id, None)

    async def _run_ffmpeg(
        self, raw: bytes, src: tuple[int, int], out: tuple[int, int], dest: Path
    ) -> None:
        last = max(1, self._frames - 1)
        # A slow zoom-in drifting left to right; the source is twice the output size because
        # zoompan rounds its crop to whole pixels and jitters on a small source.
        zoompan = (
            f"zoompan=z='1+0.2*on/{last}':x='(iw-iw/zoom)*on/{last}':y='(ih-ih/zoom)/2'"
            f":d={self._frames}:s={out[0]}x{out[1]}:fps={self._fps},format=yuv420p"
        )
        args = [
            *("-hide_banner", "-nostats", "-loglevel", "error", "-y"),
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{src[0]}x{src[1]}"),
            *("-i", "pipe:0", "-vf", zoompan, "-frames:v", str(self._frames)),
            *("-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"),
            *("-movflags", "+faststart", "-f", "mp4", str(dest)),
        ]
        proc = await asyncio.create_subprocess_exec(
            self._ffmpeg,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await proc.communicate(raw)
        finally:
            # Cancelled or timed out: the render must not outlive its prediction.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            tail = stderr.decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"ffmpeg exited with {proc.returncode}: {tail}")


def _prepare(image: bytes, width: int) -> tuple[bytes, tuple[int, int], tuple[int, int]]:
    """Raw RGB of the source at twice the output size, and both sizes."""
    img = decode_photo(image, (width * 2, width * 8))
    # Clamped so a freak 1x1000 image cannot ask ffmpeg for a frame of half a million rows.
    height = min(width * 4, max(2, round(width * img.height / img.width / 2) * 2))
    src = (width * 2, height * 2)
    return img.resize(src, Image.Resampling.BICUBIC).tobytes(), src, (width, height)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _first_picture(inputs: Mapping[str, Any]) -> bytes:
    for value in inputs.values():
        if isinstance(value, bytes):
            return value
        if isinstance(value, list) and value and isinstance(value[0], bytes):
            return bytes(value[0])
    raise ValueError("no picture to animate: neither an image nor a picture input")
