"""A style's sample: an image, an animation or a short video, checked when the styles load; a
broken one is refused there, with the line at fault, never shown to a user."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from flick.errors import ConfigError
from flick.media import SampleKind
from flick.styles import load_styles
from flick.testing.media_files import make_audio_only, make_gif, make_video, truncate

HEADER = '[styles.plain]\ntitle = { en = "Plain" }\nimage_prompt = "a"\nvideo_prompt = "b"\n\n'


def styles_with_sample(tmp_path: Path, sample: str) -> Path:
    path = tmp_path / "styles.toml"
    path.write_text(
        HEADER + '[styles.hug]\ntitle = { en = "Hug" }\nimage_prompt = "a"\n'
        f'sample = "{sample}"\nvideo_prompt = "b"\n',
        encoding="utf-8",
    )
    return path


def _png(tmp: Path) -> Path:
    Image.new("RGB", (64, 48), (200, 120, 90)).save(tmp / "s.png")
    return tmp / "s.png"


def _gif(tmp: Path) -> Path:
    return make_gif(tmp / "s.gif")


def _silent(tmp: Path) -> Path:
    return make_video(tmp / "s.mp4", seconds=1)


def _sounding(tmp: Path) -> Path:
    return make_video(tmp / "s.mp4", seconds=1, audio=True)


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (_png, SampleKind.PHOTO),
        (_gif, SampleKind.ANIMATION),
        (_silent, SampleKind.ANIMATION),
        (_sounding, SampleKind.VIDEO),
    ],
)
def test_a_sample_is_shown_as_what_it_is(tmp_path: Path, make: object, kind: SampleKind) -> None:
    assert callable(make)
    sample: Path = make(tmp_path)
    styles = load_styles(styles_with_sample(tmp_path, sample.name))
    assert styles["hug"].sample == sample and styles["hug"].sample_kind is kind
    assert styles["plain"].sample is None and styles["plain"].sample_kind is None


def _text(tmp: Path) -> Path:
    (tmp / "notes.mp4").write_text("not a video at all\n")
    return tmp / "notes.mp4"


def _broken_video(tmp: Path) -> Path:
    whole = make_video(tmp / "whole.mp4", size=(160, 120), seconds=2, bitrate="2M", noise=True)
    return truncate(whole, tmp / "cut.mp4")


def _no_picture(tmp: Path) -> Path:
    return make_audio_only(tmp / "sound.mp4")


def _too_long(tmp: Path) -> Path:
    return make_video(tmp / "long.mp4", size=(32, 32), seconds=61)


def _directory(tmp: Path) -> Path:
    (tmp / "folder").mkdir()
    return tmp / "folder"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: tmp / "missing.jpg", "is not a file"),
        (_directory, "is not a file"),
        (_text, "not an image (JPEG/PNG/WebP), a GIF or a video"),
        (_broken_video, "not a readable video"),
        (_no_picture, "has no video stream"),
        (_too_long, "a sample should be short"),
    ],
)
def test_a_broken_sample_is_refused_at_load_with_its_line(
    tmp_path: Path, make: object, problem: str
) -> None:
    assert callable(make)
    sample: Path = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_styles(styles_with_sample(tmp_path, sample.name))
    ((where, said, _hint),) = info.value.problems
    assert where.endswith(", line 6")  # the style's table, as for its other problems
    assert problem in said and "styles.hug.sample" in said
