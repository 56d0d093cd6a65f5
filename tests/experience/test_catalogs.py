"""Every text the code uses exists in every catalog, with the same placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

import flick
from flick.i18n import LANGUAGES, catalog, pick_language, t

SOURCE = Path(flick.__file__).parent
# say("key"…), t(lang, "key"…), and keys built from a prefix (f"failed_{reason}" etc.).
LITERAL = re.compile(r"""(?:\bsay\(|\bt\([\w.]+,\s*)["']([a-z_]+)["']""")
PREFIXED = re.compile(r"""f["']((?:failed|gen_status|kind|status)_)\{""")


def keys_in_code() -> set[str]:
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        found |= set(LITERAL.findall(path.read_text(encoding="utf-8")))
    return found


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_key_the_code_uses_is_in_every_catalog() -> None:
    used = keys_in_code()
    assert len(used) > 40  # the scan really found the texts
    for lang in LANGUAGES:
        missing = used - set(catalog(lang))
        assert not missing, f"{lang}.po lacks {sorted(missing)}"


def test_prefixed_families_exist_for_every_value() -> None:
    families = set()
    for path in SOURCE.rglob("*.py"):
        families |= set(PREFIXED.findall(path.read_text(encoding="utf-8")))
    assert {"failed_", "gen_status_"} <= families
    reasons = {
        "generic",
        "moderation",
        "bad_photo",
        "no_image",
        "video_failed",
        "bad_output",
        "timeout",
    }
    statuses = {"queued", "composing", "animating", "delivering", "done", "failed", "canceled"}
    for lang in LANGUAGES:
        keys = set(catalog(lang))
        assert {f"failed_{r}" for r in reasons} <= keys
        assert {f"gen_status_{s}" for s in statuses} <= keys


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_translations_are_complete_and_keep_placeholders(lang: str) -> None:
    english, other = catalog("en"), catalog(lang)
    assert set(english) == set(other)
    for key, text in english.items():
        assert placeholders(other[key]) == placeholders(text), key
        assert other[key] != text or not text.strip(string.punctuation + " "), key


def test_language_follows_telegram_code_and_choice() -> None:
    assert pick_language(None, "ru-RU") == "ru"
    assert pick_language(None, "de") == "en"
    assert pick_language("en", "ru") == "en"
    assert "Баланс" in t("ru", "canceled_refunded", balance=1)
