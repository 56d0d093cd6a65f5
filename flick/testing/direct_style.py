"""A style on the direct route, for tests and benchmarks: `together`, Kling v1.6 making the video
from both photos (its `reference_images`), nothing composed. flick/styles.toml has no direct style,
so the tests of routes (and bench.pipeline) add this one to a styles file of their own.

    path = styles_file(tmp_path / "styles.toml", tier("hd", "HD", credits=2, usd=0.9, duration=10))
"""

from __future__ import annotations

from pathlib import Path

from flick.styles import DEFAULT_FILE

KLING = "kwaivgi/kling-v1.6-standard"
SEEDANCE = "bytedance/seedance-1-lite"

#: The style and its model (its input is checked against flick/model_inputs/kwaivgi__kling-…).
DIRECT_STYLE = f"""
[styles.together]
emoji = "🫂"
title = {{ en = "Together" }}
route = "direct"
video_prompt = "The two people from the reference images hug warmly."

[styles.together.model]
name = "{KLING}"
images = "reference_images"
inputs = {{ aspect_ratio = "9:16" }}
resolution_input = ""
"""

#: Seedance standing in while Kling is down (append after DIRECT_STYLE).
SEEDANCE_FALLBACK = f"""
[styles.together.fallback]
name = "{SEEDANCE}"
images = "reference_images"
inputs = {{ aspect_ratio = "9:16" }}
"""


def tier(
    key: str,
    title: str,
    *,
    credits: int,
    usd: float,
    duration: int,
    resolution: str | None = None,
) -> str:
    """One `[[styles.together.tiers]]` table (append after DIRECT_STYLE)."""
    lines = [
        "",
        "[[styles.together.tiers]]",
        f'key = "{key}"',
        f'title = {{ en = "{title}" }}',
        f"credits = {credits}",
        f"usd = {usd}",
        f"duration = {duration}",
    ]
    if resolution is not None:
        lines.append(f'resolution = "{resolution}"')
    return "\n".join(lines) + "\n"


def styles_file(path: Path, *extra: str, base: str | None = None) -> Path:
    """Write `base` (the built-in styles when None) + DIRECT_STYLE + `extra` to `path`."""
    head = DEFAULT_FILE.read_text(encoding="utf-8") if base is None else base
    path.write_text(head + DIRECT_STYLE + "".join(extra), encoding="utf-8")
    return path
