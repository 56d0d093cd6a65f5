"""Styles: a TOML file the operator edits. A broken file is refused with the line at fault."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flick.errors import ConfigError
from flick.media import MediaError, SampleKind, sample_kind_sync
from flick.model_schemas import route_problems
from flick.routes import Route, parse_route

DEFAULT_FILE = Path(__file__).with_name("styles.toml")
_SAMPLE_HINT = "use a JPEG/PNG/WebP image, a GIF, or an MP4 of up to 60 s"
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class Style:
    key: str
    titles: dict[str, str]
    emoji: str
    image_prompt: str
    video_prompt: str
    video_inputs: dict[str, Any] = field(default_factory=dict)
    sample: Path | None = None
    #: How its video is made: the route, the model(s) and the quality tiers (flick/routes.py).
    route: Route = field(default_factory=Route)
    #: How the sample is shown in the picker (checked at load): photo, animation or video.
    sample_kind: SampleKind | None = None

    def title(self, lang: str) -> str:
        return self.titles.get(lang) or self.titles["en"]

    def label(self, lang: str) -> str:
        return f"{self.emoji} {self.title(lang)}".strip()


def _line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return 1


def load_styles(path: Path | None = None) -> dict[str, Style]:
    path = path or DEFAULT_FILE
    where = f"STYLES_FILE {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(where, f"cannot be read: {exc.strerror}", "")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(where, f"is not valid TOML: {exc}", "")]) from None
    table = raw.get("styles")
    if not isinstance(table, dict) or not table:
        raise ConfigError([(where, "has no [styles.<key>] tables", "see flick/styles.toml")])
    problems: list[tuple[str, str, str]] = []
    styles: dict[str, Style] = {}
    for key, spec in table.items():
        line = _line_of(text, f"[styles.{key}]") if _KEY.match(key) else _line_of(text, key)
        at = f"{where}, line {line}"
        if not _KEY.match(key):
            problems.append((at, f"style key {key!r} may use only letters, digits, _ and -", ""))
            continue
        if not isinstance(spec, dict):
            problems.append((at, f"styles.{key} must be a table", ""))
            continue
        titles = spec.get("title")
        if not isinstance(titles, dict) or not isinstance(titles.get("en"), str):
            problems.append((at, f'styles.{key} needs title = {{ en = "..." }}', ""))
            continue
        # A direct route makes the video from the photos: it has no picture to compose.
        direct = spec.get("route") == "direct"
        needed = ("video_prompt",) if direct else ("image_prompt", "video_prompt")
        missing = [k for k in needed if not isinstance(spec.get(k), str)]
        if missing:
            problems.append((at, f"styles.{key} needs {' and '.join(missing)} (text)", ""))
            continue
        inputs = spec.get("video_inputs", {})
        if not isinstance(inputs, dict):
            problems.append((at, f"styles.{key}.video_inputs must be a table", ""))
            continue
        route, problem = parse_route(spec, inputs)
        if route is None:
            problems.append((at, f"styles.{key}: {problem}", "see the header of flick/styles.toml"))
            continue
        refused = route_problems(route, spec["video_prompt"])
        if refused:
            hint = "the model's inputs: flick/model_inputs/"
            problems.extend((at, f"styles.{key}: {p}", hint) for p in refused)
            continue
        sample = spec.get("sample")
        if sample is not None and not isinstance(sample, str):
            problems.append((at, f"styles.{key}.sample must be a file path (text)", ""))
            continue
        sample_path = (path.parent / sample) if isinstance(sample, str) else None
        if sample_path is not None and not sample_path.is_file():
            problems.append((at, f"styles.{key}.sample {sample!r} is not a file", ""))
            continue
        try:
            kind = sample_kind_sync(sample_path) if sample_path is not None else None
        except (MediaError, OSError) as exc:
            problems.append((at, f"styles.{key}.sample {sample!r}: {exc}", _SAMPLE_HINT))
            continue
        styles[key] = Style(
            key=key,
            titles={str(k): str(v) for k, v in titles.items()},
            emoji=str(spec.get("emoji", "")),
            image_prompt=spec.get("image_prompt", ""),
            video_prompt=spec["video_prompt"],
            video_inputs=dict(inputs),
            sample=sample_path,
            route=route,
            sample_kind=kind,
        )
    if problems:
        raise ConfigError(problems)
    return styles
