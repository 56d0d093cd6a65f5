"""The styles file: the built-in one loads; a broken one is refused with the line at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from flick.errors import ConfigError
from flick.styles import DEFAULT_FILE, load_styles


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
