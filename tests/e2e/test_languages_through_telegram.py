"""Languages through Telegram: the first contact's `language_code` picks the catalog (English when
there is none), /language offers every catalog present, and the user's choice wins from then on."""

from __future__ import annotations

from flick.i18n import LANGUAGES, language_name, t
from flick.models.db import pool
from flick.testing.telegram import raw

from .conftest import Bot

SendMessage = raw.functions.messages.SendMessage


def _welcome(lang: str, name: str) -> str:
    return t(lang, "welcome", name=name, n=1, price=50)


async def test_a_brazilian_user_is_welcomed_in_portuguese(bot: Bot) -> None:
    ana = bot.tg.user(6101, "Ana", language_code="pt-br")
    await bot.push(bot.tg.command(ana, "start"))
    assert bot.tg.texts_to(ana.id) == [_welcome("pt_BR", "Ana")]
    assert "Você tem 1 crédito." in bot.tg.texts_to(ana.id)[0]
    sent = bot.tg.sent(SendMessage, ana.id)[0]
    assert bot.tg.buttons(sent) == [[(t("pt_BR", "button_create"), "create")]]


async def test_a_user_whose_language_has_no_catalog_gets_english(bot: Bot) -> None:
    li = bot.tg.user(6102, "Li", language_code="zh-hans")
    nobody = bot.tg.user(6103, "Sam", language_code="")
    await bot.push(bot.tg.command(li, "start"), bot.tg.command(nobody, "start"))
    assert bot.tg.texts_to(li.id) == [_welcome("en", "Li")]
    assert bot.tg.texts_to(nobody.id) == [_welcome("en", "Sam")]


async def test_language_lists_all_seven_and_the_choice_wins_over_telegram(bot: Bot) -> None:
    olha = bot.tg.user(6104, "Olha", language_code="pt-br")
    await bot.push(bot.tg.command(olha, "language"))
    offer = bot.tg.sent(SendMessage, olha.id)[-1]
    assert offer.request.message == t("pt_BR", "language_pick")
    offered = [button for row in bot.tg.buttons(offer) for button in row]
    assert offered == [(language_name(lang), f"lang:{lang}") for lang in LANGUAGES]
    assert len(offered) == 7 and ("Українська", "lang:uk") in offered

    await bot.push(bot.tg.callback(olha, "lang:uk"))
    assert bot.tg.texts_to(olha.id)[-1] == t("uk", "language_set")
    stored = await pool().fetchrow(
        "SELECT language, language_code FROM users WHERE telegram_id = $1", olha.id
    )
    assert (stored["language"], stored["language_code"]) == ("uk", "pt-br")

    await bot.push(bot.tg.command(olha, "balance"))  # Telegram still says pt-br
    assert bot.tg.texts_to(olha.id)[-1] == t("uk", "balance", n=1)
    assert "1 кредит." in bot.tg.texts_to(olha.id)[-1]
