"""The styles file: the built-in one loads; a broken one is refused with the line at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from flick.errors import ConfigError
from flick.styles import DEFAULT_FILE, load_styles
from flick.testing.direct_style import (
    DIRECT_STYLE,
    KLING,
    SEEDANCE,
    SEEDANCE_FALLBACK,
    styles_file,
    tier,
)


def test_builtin_styles_load_with_titles_in_both_languages() -> None:
    styles = load_styles()
    assert {"romantic", "hug", "kiss", "dance"} <= set(styles)
    for style in styles.values():
        assert style.title("ru") != style.title("en")
        assert style.image_prompt and style.video_prompt


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "styles.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_broken_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, DEFAULT_FILE.read_text() + "\n[styles.oops\n")
    with pytest.raises(ConfigError) as info:
        load_styles(path)
    assert "line" in info.value.render()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('[styles.hug]\nemoji = "x"\nimage_prompt = "a"\nvideo_prompt = "b"\n', "title"),
        ('[styles.hug]\ntitle = { en = "Hug" }\nvideo_prompt = "b"\n', "image_prompt"),
        (
            '[styles."bad key"]\ntitle = { en = "X" }\nimage_prompt = "a"\nvideo_prompt = "b"\n',
            "may use only",
        ),
        (
            '[styles.hug]\ntitle = { en = "Hug" }\nimage_prompt = "a"\nvideo_prompt = "b"\n'
            'sample = "missing.jpg"\n',
            "not a file",
        ),
        ('title = "no styles table"\n', "no [styles"),
    ],
)
def test_invalid_style_is_refused_with_its_line(tmp_path: Path, body: str, problem: str) -> None:
    path = write(tmp_path, "# a comment\n\n" + body)
    with pytest.raises(ConfigError) as info:
        load_styles(path)
    text = info.value.render()
    assert problem in text
    if "[styles" in body:
        assert "line 3" in text


def test_reload_keeps_old_styles_when_the_file_breaks(tmp_path: Path) -> None:
    path = write(tmp_path, DEFAULT_FILE.read_text())
    assert len(load_styles(path)) == 4
    path.write_text("[styles.x]\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_styles(path)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (tier("long", "Long", credits=3, usd=1.0, duration=7), "tier 'long': input.duration"),
        (
            '\n[styles.together.model]\nname = "kwaivgi/kling-v1.6-standard"\n'
            'images = "reference_images"\ninputs = { aspect_ratio = "4:5" }\n',
            "input.aspect_ratio",
        ),
        (SEEDANCE_FALLBACK.replace("aspect_ratio", "aspect"), "fallback bytedance/seedance-1-lite"),
    ],
    ids=["duration_the_model_lacks", "aspect_ratio_it_refuses", "misspelt_fallback_input"],
)
def test_a_style_whose_inputs_its_model_refuses_is_refused_at_load_with_its_line(
    tmp_path: Path, extra: str, problem: str
) -> None:
    if extra.startswith("\n[styles.together.model]"):  # replaces the style's model table
        body = DIRECT_STYLE.split("[styles.together.model]")[0] + extra
        path = styles_file(tmp_path / "styles.toml", base="")
        path.write_text(body, encoding="utf-8")
    else:
        path = styles_file(tmp_path / "styles.toml", extra, base="")
    with pytest.raises(ConfigError) as info:
        load_styles(path)
    text = info.value.render()
    assert problem in text, text
    assert f"line {_line(path, '[styles.together]')}" in text
    assert "flick/model_inputs" in text


def test_a_model_without_a_schema_is_not_refused(tmp_path: Path) -> None:
    body = DIRECT_STYLE.replace(KLING, "someone/unlisted-model")
    path = tmp_path / "styles.toml"
    path.write_text(body + tier("hd", "HD", credits=2, usd=1.0, duration=7), encoding="utf-8")
    styles = load_styles(path)
    assert styles["together"].route.model.name == "someone/unlisted-model"
    assert [t.duration for t in styles["together"].route.tiers] == [7]


def test_the_direct_style_and_its_fallback_pass_their_models_schemas(tmp_path: Path) -> None:
    extra = SEEDANCE_FALLBACK + tier("hd", "HD", credits=2, usd=0.9, duration=10)
    styles = load_styles(styles_file(tmp_path / "styles.toml", extra))
    route = styles["together"].route
    assert (route.model.name, route.fallback and route.fallback.name) == (KLING, SEEDANCE)


def _line(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if needle in line)
