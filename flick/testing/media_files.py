"""Media files for tests, made with the bundled ffmpeg and Pillow: videos of a given size and
length, and the broken ones a probe must refuse."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
from PIL import Image


def _ffmpeg(*args: str) -> None:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=600)


def make_video(
    path: Path,
    *,
    size: tuple[int, int] = (64, 64),
    seconds: float = 1.0,
    bitrate: str | None = None,
    audio: bool = False,
    noise: bool = False,
) -> Path:
    """An H.264 MP4. `noise` with a high `bitrate`: a big file (noise does not compress)."""
    width, height = size
    source = f"color=c=gray:s={width}x{height}:d={seconds}:r=25"
    if noise:
        source += ",noise=alls=60:allf=t+u"
    inputs = ["-f", "lavfi", "-i", source]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    rate = ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate] if bitrate else []
    sound = ["-c:a", "aac", "-shortest"] if audio else []
    _ffmpeg(*inputs, "-c:v", "libx264", "-preset", "ultrafast", *rate, "-pix_fmt", "yuv420p",
            *sound, "-movflags", "+faststart", str(path))  # fmt: skip
    return path


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An MP4 with sound and no picture: a container ffmpeg reads, with no video stream."""
    _ffmpeg("-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:a", "aac", str(path))
    return path


def make_gif(path: Path, size: tuple[int, int] = (48, 32), frames: int = 4) -> Path:
    """A small looping GIF."""
    pictures = [Image.new("RGB", size, (40 * i % 256, 90, 160)) for i in range(frames)]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=120, loop=0)
    return path


def truncate(source: Path, path: Path, fraction: float = 0.3) -> Path:
    """The first part of a file only: a download cut short."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
