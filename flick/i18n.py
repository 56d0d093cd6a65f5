"""Every text a user sees comes from a gettext catalog (flick/locales/<lang>.po, read with Babel).

Message ids are short keys ("welcome", "balance"); the English catalog is the fallback. Texts take
`{name}` placeholders filled with str.format.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALES = Path(__file__).with_name("locales")
LANGUAGES = ("en", "ru")
#: Each language in its own words, for /language.
LANGUAGE_NAMES = {"en": "English", "ru": "Русский"}
DEFAULT = "en"


@cache
def catalog(lang: str) -> dict[str, str]:
    with (LOCALES / f"{lang}.po").open("rb") as fh:
        po = read_po(fh, locale=lang)
    return {str(m.id): str(m.string) for m in po if m.id and m.string}


def pick_language(chosen: str | None, telegram_code: str | None) -> str:
    """The user's /language choice wins; else Telegram's language_code; else English."""
    for code in (chosen, telegram_code):
        if code:
            short = code.split("-")[0].lower()
            if short in LANGUAGES:
                return short
    return DEFAULT


def t(lang: str, key: str, /, **values: object) -> str:
    text = catalog(lang).get(key) or catalog(DEFAULT)[key]
    return text.format(**values) if values else text
