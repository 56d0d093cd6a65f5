"""What a media file is, read with the ffmpeg bundled in `imageio-ffmpeg`: a video's size and
length (Telegram fills these in itself only for small files), and thumbnails within Telegram's
limits (JPEG, at most 320 px on the long side, at most 200 kB).

No ffprobe is bundled, so the probe reads ffmpeg's own report of one pass that copies the first
video stream to the null muxer: it parses the container and every packet without decoding
(`-xerror` stops at the first corrupt packet), so a truncated or corrupt file fails here,
cheaply, instead of in the user's chat.
The blocking calls (`*_sync`) are for start-up; the engine awaits the async ones, which run in a
thread so the event loop never waits for ffmpeg.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from flick.errors import FlickError

#: Telegram's limits for a video's thumbnail.
THUMB_SIDE: Final = 320
THUMB_BYTES: Final = 200 * 1024
#: What a style's sample may be: Telegram's photo limit; short and small enough to send at once.
SAMPLE_PHOTO_BYTES: Final = 10 * 1024 * 1024
SAMPLE_VIDEO_BYTES: Final = 20 * 1024 * 1024
SAMPLE_SECONDS: Final = 60.0
#: A probe that takes longer than this is treated as a broken file (ffmpeg stuck on bad data).
PROBE_TIMEOUT: Final = 120.0

_DURATION = re.compile(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO = re.compile(rb"Stream #0:\d+[^:\n]*: Video: [^\n]*?, (\d{1,5})x(\d{1,5})")
_AUDIO = re.compile(rb"Stream #0:\d+[^:\n]*: Audio: ")
_ROTATION = re.compile(rb"rotation of (-?\d+(?:\.\d+)?) degrees")
_PROGRESS = re.compile(rb"frame=\s*(\d+).*?time=\s*(-?\d+):(\d\d):(\d\d(?:\.\d+)?)")


class MediaError(FlickError):
    """A file that is not the media it should be: unreadable, no video stream, no frames."""


class SampleKind(Enum):
    """How Telegram shows a file best: a photo, a silent looping animation, or a video."""

    PHOTO = "photo"
    ANIMATION = "animation"
    VIDEO = "video"


@dataclass(frozen=True)
class VideoInfo:
    """What `DocumentAttributeVideo` wants: display width and height, duration in seconds."""

    width: int
    height: int
    duration: float
    has_audio: bool = False


@dataclass(frozen=True)
class VideoMeta:
    """A video's attributes plus its thumbnail (JPEG bytes, or None: let Telegram pick)."""

    info: VideoInfo
    thumb: bytes | None = None


def ffmpeg_exe() -> str:
    import imageio_ffmpeg  # imported here: it looks for the binary when first used

    exe: str = imageio_ffmpeg.get_ffmpeg_exe()
    return exe


def _seconds(hours: bytes, minutes: bytes, seconds: bytes) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def probe_video_sync(path: Path) -> VideoInfo:
    """Width, height and duration of the first video stream, or MediaError saying why not."""
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-xerror", "-i", str(path),
        "-map", "0:v:0", "-c", "copy", "-f", "null", "-",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{path.name}: ffmpeg did not finish reading it") from None
    report = done.stderr
    video = _VIDEO.search(report)
    if video is None and b"Input #0" in report:
        raise MediaError(f"{path.name}: has no video stream")
    if done.returncode != 0 or video is None:
        # -xerror: a corrupt packet (a truncated download) stops the pass with an error.
        raise MediaError(f"{path.name}: not a readable video ({_last_line(report)})")
    width, height = int(video.group(1)), int(video.group(2))
    rotation = _ROTATION.search(report)
    if rotation is not None and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width  # shown upright by players, so by Telegram too
    progress = _PROGRESS.findall(report)
    frames = int(progress[-1][0]) if progress else 0
    header = _DURATION.search(report)
    duration = _seconds(*header.groups()) if header else 0.0
    if duration <= 0 and progress:
        duration = _seconds(*progress[-1][1:])
    if frames <= 0 or duration <= 0 or width <= 0 or height <= 0:
        raise MediaError(f"{path.name}: no frames to show ({frames} frames, {duration:.2f} s)")
    return VideoInfo(width, height, duration, has_audio=_AUDIO.search(report) is not None)


async def probe_video(path: Path) -> VideoInfo:
    return await asyncio.to_thread(probe_video_sync, path)


def _last_line(report: bytes) -> str:
    """ffmpeg's first complaint (its last line is often just "Conversion failed!")."""
    lines = [line.strip() for line in report.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if "rror" in line or "corrupt" in line or "nvalid" in line:
            return line[:200]
    return lines[-1][:200] if lines else "ffmpeg said nothing"


def thumbnail_sync(image: bytes, aspect: tuple[int, int] | None = None) -> bytes:
    """A JPEG within Telegram's thumbnail limits. `aspect` (the video's width and height)
    crops the picture to the video's shape, so the preview is not stretched in the chat."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            # A JPEG decodes straight at a fraction of its size: a thumbnail needs no more.
            opened.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))
            picture = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise MediaError(f"not an image: {exc}") from exc
    if aspect is not None and aspect[0] > 0 and aspect[1] > 0:
        scale = min(THUMB_SIDE / aspect[0], THUMB_SIDE / aspect[1])
        size = (max(1, round(aspect[0] * scale)), max(1, round(aspect[1] * scale)))
        picture = ImageOps.fit(picture, size, Image.Resampling.LANCZOS)
    else:
        picture.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    for quality in (87, 75, 60, 45, 30):
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=quality, optimize=True)
        if out.tell() <= THUMB_BYTES:
            return out.getvalue()
    raise MediaError("no thumbnail under 200 kB")  # 320 px at quality 30 is a few kB


async def thumbnail(image: bytes, aspect: tuple[int, int] | None = None) -> bytes:
    return await asyncio.to_thread(thumbnail_sync, image, aspect)


def first_frame_sync(path: Path) -> bytes:
    """The video's first frame as a thumbnail JPEG (when there is no composed picture)."""
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path),
        "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{path.name}: ffmpeg did not finish reading it") from None
    if done.returncode != 0 or not done.stdout:
        raise MediaError(f"{path.name}: no frame to show ({_last_line(done.stderr)})")
    return thumbnail_sync(done.stdout)


async def describe_video(path: Path, picture: bytes | None = None) -> VideoMeta:
    """Probe a video and make its thumbnail: from `picture` if given, else its first frame."""
    return await with_thumbnail(await probe_video(path), path, picture)


async def with_thumbnail(info: VideoInfo, path: Path, picture: bytes | None) -> VideoMeta:
    """`info` with a thumbnail: `picture` cut to the video's shape, else its first frame."""
    if picture is not None:
        try:
            return VideoMeta(info, await thumbnail(picture, (info.width, info.height)))
        except MediaError:
            pass  # the picture is not one Pillow reads: the video's own first frame will do
    return VideoMeta(info, await asyncio.to_thread(first_frame_sync, path))


def gif_to_mp4_sync(source: Path, dest: Path) -> None:
    """A GIF as the silent H.264 MP4 Telegram plays like it (even sizes: H.264 wants them)."""
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(source),
        "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-an", "-movflags", "+faststart", str(dest),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{source.name}: ffmpeg did not finish converting it") from None
    if done.returncode != 0:
        raise MediaError(f"{source.name}: cannot be made a video ({_last_line(done.stderr)})")


def sample_kind_sync(path: Path) -> SampleKind:
    """How a style's sample file is best shown, or MediaError when it is not one we can send.

    A still image is a photo; a GIF, or a video without sound, is an animation (Telegram
    loops it silently, as a preview should); a video with sound is a video.
    """
    try:
        with Image.open(path) as image:
            image.verify()
            animated = bool(getattr(image, "is_animated", False))
            kind = image.format
    except (OSError, ValueError, UnidentifiedImageError, SyntaxError):
        kind, animated = None, False
    size = path.stat().st_size
    if kind in ("JPEG", "PNG", "WEBP") and not animated:
        if size > SAMPLE_PHOTO_BYTES:
            raise MediaError(f"{size} bytes: Telegram takes photos up to 10 MB")
        return SampleKind.PHOTO
    if size > SAMPLE_VIDEO_BYTES:
        raise MediaError(f"{size} bytes: a sample should be small (up to 20 MB)")
    if kind == "GIF":
        return SampleKind.ANIMATION
    try:
        info = probe_video_sync(path)
    except MediaError as exc:
        raise MediaError(f"not an image (JPEG/PNG/WebP), a GIF or a video: {exc}") from None
    if info.duration > SAMPLE_SECONDS:
        raise MediaError(f"{info.duration:.0f} s long: a sample should be short (up to 60 s)")
    return SampleKind.VIDEO if info.has_audio else SampleKind.ANIMATION
