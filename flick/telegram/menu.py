"""The bot's profile: the command menu Telegram shows, in English and Russian."""

from __future__ import annotations

from typing import Final

from pyrogram import Client, types

#: (command, description) in menu order. English is the default for every other language.
COMMANDS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "": (
        ("start", "Start: what Flick does"),
        ("create", "Make a video from two photos"),
        ("balance", "Your credits"),
        ("buy", "Buy credits with Telegram Stars"),
        ("subscription", "A monthly plan: see or manage it"),
        ("promo", "Use a promo code"),
        ("invite", "Invite friends, earn credits"),
        ("history", "Your videos"),
        ("cancel", "Cancel what you are doing"),
        ("help", "How it works"),
        ("language", "Change the language"),
        ("paysupport", "Help with a payment"),
        ("terms", "Terms of use"),
    ),
    "ru": (
        ("start", "Начать: что умеет Flick"),
        ("create", "Сделать видео из двух фото"),
        ("balance", "Ваши кредиты"),
        ("buy", "Купить кредиты за Telegram Stars"),
        ("subscription", "Ежемесячный план: посмотреть, управлять"),
        ("promo", "Применить промокод"),
        ("invite", "Пригласить друзей и получить кредиты"),
        ("history", "Ваши видео"),
        ("cancel", "Отменить текущее действие"),
        ("help", "Как это работает"),
        ("language", "Сменить язык"),
        ("paysupport", "Помощь с оплатой"),
        ("terms", "Условия использования"),
    ),
}


async def set_commands(client: Client) -> None:
    """Publish the command menu: the default list, then one per language code."""
    for language_code, commands in COMMANDS.items():
        await client.set_bot_commands(
            [types.BotCommand(name, description) for name, description in commands],
            scope=types.BotCommandScopeDefault(),
            language_code=language_code,
        )
