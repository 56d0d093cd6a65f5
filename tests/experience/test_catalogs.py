"""Every catalog has every message, with English's placeholders and all its plural forms; counts
read right in every language; a language code from Telegram finds its catalog.

A catalog missing a message or a plural form fails here, naming the message and the catalog,
never in front of a user.
"""

from __future__ import annotations

import ast
import gettext
import re
import string
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.plurals import get_plural

import flick
from flick.i18n import (
    DEFAULT,
    LANGUAGES,
    MissingCountError,
    catalog,
    language_name,
    match_language,
    pick_language,
    t,
)
from flick.styles import load_styles
from flick.telegram.menu import COMMANDS, menus
from flick.testing.python_source import parse

SOURCE = Path(flick.__file__).parent
OTHERS = [lang for lang in LANGUAGES if lang != DEFAULT]
# say("key"…), t(lang, "key"…), and keys built from a prefix (f"failed_{reason}" etc.).
LITERAL = re.compile(r"""(?:\bsay\(|\bt\([\w.]+,\s*)["']([a-z_]+)["']""")
PREFIXED = re.compile(
    r"""f["']((?:failed|gen_status|kind|status|command|payment_status|promo_state)_)\{"""
)
#: Texts that are rightly the same as English in a language (a loanword, a code, only symbols).
SAME_AS_ENGLISH = {
    *((lang, "history_line") for lang in ("es", "pt_BR", "de", "tr")),  # "#{id} · {style} · …"
    *((lang, "button_resend") for lang in ("es", "de", "tr")),  # "▶️ Video #{id}"
}


def keys_in_code() -> set[str]:
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        found |= set(LITERAL.findall(path.read_text(encoding="utf-8")))
    return found


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def english_placeholders(key: str) -> set[str]:
    en = catalog(DEFAULT)
    return placeholders(en.plurals[key][-1] if key in en.plurals else en.texts[key])


def cldr_index(lang: str, n: int) -> int:
    """Which plural form Babel's CLDR data picks for n (independent of the catalog's header)."""
    return gettext.c2py(get_plural(lang).plural_expr)(n)


def test_seven_catalogs_are_found_in_the_folder() -> None:
    assert LANGUAGES[0] == DEFAULT
    assert set(LANGUAGES) == {path.stem for path in (SOURCE / "locales").glob("*.po")}
    assert {"en", "ru", "es", "pt_BR", "de", "tr", "uk"} <= set(LANGUAGES)


def test_every_key_the_code_uses_is_in_every_catalog() -> None:
    used = keys_in_code()
    assert len(used) > 40  # the scan really found the texts
    for lang in LANGUAGES:
        missing = used - catalog(lang).keys()
        assert not missing, f"{lang}.po lacks {sorted(missing)}"


def test_prefixed_families_exist_for_every_value() -> None:
    families = set()
    for path in SOURCE.rglob("*.py"):
        families |= set(PREFIXED.findall(path.read_text(encoding="utf-8")))
    assert {"failed_", "gen_status_", "command_", "payment_status_", "promo_state_"} <= families
    reasons = {
        "generic",
        "moderation",
        "bad_photo",
        "no_image",
        "video_failed",
        "bad_output",
        "timeout",
        "undeliverable",
    }
    statuses = {"queued", "composing", "animating", "delivering", "done", "failed", "canceled"}
    promo_states = {"active", "disabled", "expired", "used_up"}
    for lang in LANGUAGES:
        keys = catalog(lang).keys()
        assert {f"failed_{r}" for r in reasons} <= keys, lang
        assert {f"gen_status_{s}" for s in statuses} <= keys, lang
        assert {f"command_{c}" for c in COMMANDS} <= keys, lang
        assert {"payment_status_paid", "payment_status_refunded"} <= keys, lang
        assert {f"promo_state_{s}" for s in promo_states} <= keys, lang


@pytest.mark.parametrize("lang", OTHERS)
def test_every_english_message_is_in_the_catalog(lang: str) -> None:
    missing = catalog(DEFAULT).keys() - catalog(lang).keys()
    assert not missing, f"{lang}.po lacks {', '.join(sorted(missing))}"
    unknown = catalog(lang).keys() - catalog(DEFAULT).keys()
    assert not unknown, f"{lang}.po has messages English does not: {', '.join(sorted(unknown))}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_plural_forms_header_follows_cldr(lang: str) -> None:
    cat, cldr = catalog(lang), get_plural(lang)
    assert cat.num_plurals == cldr.num_plurals, f"{lang}.po Plural-Forms: nplurals"
    ours, theirs = gettext.c2py(cat.plural_expr), gettext.c2py(cldr.plural_expr)
    wrong = [n for n in range(0, 1_201) if ours(n) != theirs(n)]
    assert not wrong, f"{lang}.po Plural-Forms picks another form than CLDR for {wrong[:5]}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_messages_keep_placeholders_and_have_all_plural_forms(lang: str) -> None:
    en, cat = catalog(DEFAULT), catalog(lang)
    for key in en.plurals.keys() & cat.keys():
        assert key in cat.plurals, f"{lang}.po: {key} needs plural forms (msgid_plural)"
        forms = cat.plurals[key]
        assert len(forms) == cat.num_plurals, f"{lang}.po: {key} has {len(forms)} forms"
        for i, form in enumerate(forms):
            assert form.strip(), f"{lang}.po: {key} form [{i}] is empty"
            assert placeholders(form) == english_placeholders(key), f"{lang}.po: {key} [{i}]"
            assert "n" in placeholders(form), f"{lang}.po: {key} [{i}] does not show the count"
    for key in en.texts.keys() & cat.keys():
        assert key in cat.texts, f"{lang}.po: {key} has plural forms, English has none"
        assert placeholders(cat.texts[key]) == english_placeholders(key), f"{lang}.po: {key}"


@pytest.mark.parametrize("lang", OTHERS)
def test_translations_are_not_english_left_in_place(lang: str) -> None:
    en, cat = catalog(DEFAULT), catalog(lang)
    for key, text in en.texts.items():
        same = cat.texts.get(key) == text and text.strip(string.punctuation + " ")
        assert not same or (lang, key) in SAME_AS_ENGLISH, f"{lang}.po: {key} is English"
    for key, forms in en.plurals.items():
        assert en.plurals[key][-1] not in cat.plurals.get(key, ()), f"{lang}.po: {key} is English"
        assert forms


SCREENS: dict[str, dict[str, object]] = {
    "welcome": {"name": "Ana", "price": 50},
    "pick_style": {},
    "payment_thanks": {"balance": 30},
    "failed_generic": {},
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("key", SCREENS)
@pytest.mark.parametrize("n", [1, 2, 5, 21])
def test_screens_read_right_with_1_2_5_and_21_credits(lang: str, key: str, n: int) -> None:
    text = t(lang, key, n=n, **SCREENS[key])
    assert str(n) in text
    assert "{" not in text and "}" not in text, text
    form = catalog(lang).plurals[key][cldr_index(lang, n)]
    assert text == form.format(n=n, **SCREENS[key])
    if lang != DEFAULT:
        assert text != t(DEFAULT, key, n=n, **SCREENS[key])


@pytest.mark.parametrize("lang", ["ru", "uk"])
def test_slavic_forms_21_is_one_2_is_few_5_is_many(lang: str) -> None:
    categories = {n: Locale.parse(lang).plural_form(n) for n in (1, 2, 5, 21)}
    assert categories == {1: "one", 2: "few", 5: "many", 21: "one"}
    forms = catalog(lang).plurals["payment_thanks"]
    assert t(lang, "payment_thanks", n=21, balance=1) == forms[0].format(n=21, balance=1)
    assert t(lang, "payment_thanks", n=2, balance=1) == forms[1].format(n=2, balance=1)
    assert t(lang, "payment_thanks", n=5, balance=1) == forms[2].format(n=5, balance=1)
    assert forms[0] != forms[1] != forms[2]


def test_english_one_and_many() -> None:
    assert t("en", "balance", n=1) == "Your balance: 1 credit. One video costs one credit."
    assert t("en", "balance", n=0).startswith("Your balance: 0 credits.")
    assert t("en", "admin_granted", n=-1, id=7, balance=0).startswith("Applied -1 credit to 7")
    assert t("en", "admin_granted", n=-3, id=7, balance=0).startswith("Applied -3 credits to 7")


def test_a_plural_message_without_its_count_is_a_bug_in_the_caller() -> None:
    with pytest.raises(MissingCountError):
        t("ru", "balance")
    with pytest.raises(MissingCountError):
        t("en", "payment_thanks", credits=5, balance=6)  # the count goes in n
    with pytest.raises(KeyError):
        t("en", "no_such_message")


def _plural_calls_without_n() -> list[str]:
    """Calls t(lang, "key", …) / say("key", …) of a plural message passing no n= (nor **)."""
    plurals = catalog(DEFAULT).plurals.keys()
    failed_family = {k for k in plurals if k.startswith("failed_")}
    wrong = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(parse(path)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            position = {"t": 1, "say": 0}.get(str(name))
            if position is None or len(node.args) <= position:
                continue
            arg = node.args[position]
            keys: set[str] = set()
            if isinstance(arg, ast.Constant) and arg.value in plurals:
                keys = {arg.value}
            elif isinstance(arg, ast.JoinedStr) and ast.unparse(arg).startswith("f'failed_"):
                keys = failed_family
            elif isinstance(arg, ast.IfExp):
                keys = {str(c.value) for c in (arg.body, arg.orelse) if isinstance(c, ast.Constant)}
                keys &= plurals
            if keys and not any(k.arg in ("n", None) for k in node.keywords):
                wrong.append(f"{path.relative_to(SOURCE)}:{node.lineno} {sorted(keys)}")
    return wrong


def test_every_call_of_a_plural_message_passes_n() -> None:
    assert _plural_calls_without_n() == []


def test_language_names_come_from_each_catalog() -> None:
    names = {lang: language_name(lang) for lang in LANGUAGES}
    assert names["en"] == "English" and names["ru"] == "Русский"
    assert names["pt_BR"].startswith("Português") and names["uk"] == "Українська"
    assert len(set(names.values())) == len(LANGUAGES)


@pytest.mark.parametrize(
    ("code", "lang"),
    [
        ("pt-br", "pt_BR"),
        ("pt-BR", "pt_BR"),
        ("pt_BR", "pt_BR"),
        ("pt", "pt_BR"),
        ("pt-PT", "pt_BR"),
        ("ru-RU", "ru"),
        ("uk", "uk"),
        ("UK", "uk"),
        ("de-AT", "de"),
        ("es-419", "es"),
        ("tr", "tr"),
        ("en-US", "en"),
        ("zh-hans", "en"),
        ("fr", "en"),
        ("", "en"),
        (None, "en"),
        ("  ", "en"),
        ("garbage!!", "en"),
        ("x" * 40, "en"),
        ("-", "en"),
        ("pt-br-x-private-tag", "pt_BR"),
    ],
)
def test_telegram_language_codes_find_their_catalog(code: str | None, lang: str) -> None:
    assert pick_language(None, code) == lang


def test_the_users_choice_wins_over_telegram() -> None:
    assert pick_language("uk", "pt-br") == "uk"
    assert pick_language("en", "ru") == "en"
    assert pick_language("pt_BR", None) == "pt_BR"
    # A stored choice whose catalog is gone falls back to Telegram's code.
    assert pick_language("fr", "de-DE") == "de"
    assert match_language("zh-hans") is None


def test_the_command_menu_is_in_every_catalog() -> None:
    published = menus()
    assert set(published) == {"", "ru", "es", "pt", "de", "tr", "uk"}
    for code, commands in published.items():
        assert [name for name, _ in commands] == list(COMMANDS)
        assert all(0 < len(text) <= 256 for _, text in commands), code  # Telegram's limit
    assert dict(published["pt"])["language"] == t("pt_BR", "command_language")
    assert dict(published[""])["language"] == t("en", "command_language")


def test_every_style_is_named_in_every_language() -> None:
    for style in load_styles().values():
        missing = [lang for lang in LANGUAGES if lang not in style.titles]
        assert not missing, f"styles.toml: {style.key} has no title in {missing}"
