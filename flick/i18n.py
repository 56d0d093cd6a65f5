"""Every text a user sees comes from a gettext catalog (flick/locales/<lang>.po, read with Babel).

Message ids are short keys ("welcome", "balance"); the English catalog is the source and the
fallback. Texts take `{name}` placeholders filled with str.format. A text that shows a count has
plural forms (`msgid "balance"` / `msgid_plural "balance"` / `msgstr[0..k]`): gettext's `ngettext`
picks the form from the value named `n`, by the catalog's own `Plural-Forms` rule. The languages
are the catalogs present: drop a `<lang>.po` into flick/locales and it is offered in /language.
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).with_name("locales")
DEFAULT = "en"


class MissingCountError(TypeError):
    """A plural message was asked for without `n`: a bug in the caller, not in the catalog."""


@dataclass(frozen=True, slots=True)
class Catalog:
    """One language's messages, as read from its .po file."""

    lang: str
    texts: dict[str, str]  # messages without plural forms
    plurals: dict[str, tuple[str, ...]]  # messages with plural forms, in the catalog's order
    num_plurals: int  # from the catalog's Plural-Forms header
    plural_expr: str
    translations: gettext.GNUTranslations  # the same messages compiled: `ngettext` picks forms

    def keys(self) -> set[str]:
        return set(self.texts) | set(self.plurals)

    def lookup(self, key: str, n: int | None) -> str | None:
        """The text of `key` (for `n`, when it has plural forms), or None when absent or empty."""
        if key in self.plurals:
            if n is None:
                raise MissingCountError(f"{key!r} has plural forms: pass n=")
            # CLDR's plural rules are defined on the absolute value (a correction of -3 credits).
            return self.translations.ngettext(key, key, abs(n)) or None
        return self.texts.get(key) or None


def _discover() -> tuple[str, ...]:
    found = sorted(path.stem for path in LOCALES.glob("*.po"))
    return (DEFAULT, *(lang for lang in found if lang != DEFAULT))


#: Every catalog present, English first.
LANGUAGES: tuple[str, ...] = _discover()


@cache
def catalog(lang: str) -> Catalog:
    with (LOCALES / f"{lang}.po").open("rb") as fh:
        po = read_po(fh, locale=lang)
    texts: dict[str, str] = {}
    plurals: dict[str, tuple[str, ...]] = {}
    for message in po:
        if not message.id or message.fuzzy:
            continue  # the header; a fuzzy entry is a translation nobody checked (gettext skips it)
        if isinstance(message.id, tuple):
            forms = message.string if isinstance(message.string, tuple | list) else ()
            plurals[str(message.id[0])] = tuple(str(form or "") for form in forms)
        elif message.string:
            texts[str(message.id)] = str(message.string)
    compiled = BytesIO()
    write_mo(compiled, po)
    compiled.seek(0)
    return Catalog(
        lang, texts, plurals, po.num_plurals, po.plural_expr, gettext.GNUTranslations(compiled)
    )


def load_all() -> None:
    """Read every catalog now (start-up), so a broken .po stops the start, and no user's first
    message in a language waits for its catalog to be parsed (10–50 ms each)."""
    for lang in LANGUAGES:
        catalog(lang)


def _parse(code: str) -> Locale | None:
    tag = code.strip().replace("-", "_")
    for candidate in (tag, tag.split("_")[0]):
        try:
            return Locale.parse(candidate)
        except (ValueError, TypeError, UnknownLocaleError):
            continue
    return None


def match_language(code: str | None) -> str | None:
    """The catalog for a language code as Telegram or a user gives it, or None.

    "pt-br", "pt-BR" and "pt_BR" find pt_BR; a bare "pt" finds a catalog of that language
    (the one without a region first); "zh-hans", "", garbage: None.
    """
    if not code:
        return None
    wanted = _parse(code)
    if wanted is None:
        return None
    same = [lang for lang in LANGUAGES if _language_of(lang) == wanted.language]
    exact = [lang for lang in same if _territory_of(lang) == wanted.territory]
    ranked = exact or sorted(same, key=lambda lang: _territory_of(lang) is not None)
    return ranked[0] if ranked else None


@cache
def _language_of(lang: str) -> str:
    return Locale.parse(lang).language


@cache
def _territory_of(lang: str) -> str | None:
    return Locale.parse(lang).territory


def pick_language(chosen: str | None, telegram_code: str | None) -> str:
    """The user's /language choice wins; else Telegram's language_code; else English."""
    return match_language(chosen) or match_language(telegram_code) or DEFAULT


def language_name(lang: str) -> str:
    """The language in its own words (each catalog's `language_name`), for /language."""
    return t(lang, "language_name")


def telegram_code(lang: str) -> str:
    """The two-letter code Telegram uses for a catalog (bot command menus): pt_BR → "pt"."""
    return _language_of(lang)


def t(lang: str, key: str, /, **values: object) -> str:
    """The text of `key` in `lang` (English when that catalog lacks it), filled with `values`.

    A message with plural forms needs the count as `n`; without it, MissingCountError.
    """
    count = values.get("n")
    if key in catalog(DEFAULT).plurals and not isinstance(count, int):
        raise MissingCountError(f"{key!r} has plural forms: pass an int n=, got {count!r}")
    n = count if isinstance(count, int) else None
    text = (lang in LANGUAGES and catalog(lang).lookup(key, n)) or catalog(DEFAULT).lookup(key, n)
    if text is None:
        raise KeyError(f"no message {key!r} in the English catalog")
    return text.format(**values) if values else text
