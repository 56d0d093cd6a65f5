"""What probing a video costs before delivery: `flick.media.describe_video` (one ffmpeg pass
that copies the video stream to the null muxer, plus a thumbnail from the composed picture).

    .venv/bin/python -m bench.media            # ~30 s: makes the videos, then 7 runs each

Prints the median and the slowest of 7 runs per video size. The probe runs in a thread, so
what it costs the user is delivery latency, not event-loop time.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from flick.media import describe_video, probe_video_sync
from flick.testing.media_files import make_video

RUNS = 7
#: (label, size, seconds, bitrate): a typical 480p output, and big noisy ones.
VIDEOS = (
    ("480p 5 s ~1 MB", (480, 832), 5.0, "1600k"),
    ("720p 5 s ~10 MB", (720, 1280), 5.0, "16M"),
    ("720p 5 s ~20 MB", (720, 1280), 5.0, "32M"),
    ("720p 10 s ~50 MB", (720, 1280), 10.0, "40M"),
)


def picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1024, 1536), (180, 120, 140)).save(out, "JPEG", quality=90)
    return out.getvalue()


async def main() -> None:
    composed = picture()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'video':<20} {'MB':>6} {'probe ms':>9} {'+thumb ms':>10} {'max ms':>8}")
        for label, size, seconds, rate in VIDEOS:
            path = Path(tmp) / f"{size[0]}x{size[1]}-{rate}.mp4"
            make_video(path, size=size, seconds=seconds, bitrate=rate, noise=True)
            probes, wholes = [], []
            for _ in range(RUNS):
                started = time.perf_counter()
                probe_video_sync(path)
                probes.append(time.perf_counter() - started)
                started = time.perf_counter()
                await describe_video(path, composed)
                wholes.append(time.perf_counter() - started)
            mb = path.stat().st_size / 1e6
            print(
                f"{label:<20} {mb:>6.1f} {statistics.median(probes) * 1000:>9.0f} "
                f"{statistics.median(wholes) * 1000:>10.0f} {max(wholes) * 1000:>8.0f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
