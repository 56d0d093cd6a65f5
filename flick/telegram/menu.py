"""The bot's profile: the command menu Telegram shows, one per catalog (texts `command_<name>`)."""

from __future__ import annotations

from typing import Final

from pyrogram import Client, types

from flick.i18n import DEFAULT, LANGUAGES, t, telegram_code

#: The commands in menu order; each one's description is the catalog message `command_<name>`.
COMMANDS: Final[tuple[str, ...]] = (
    "start",
    "create",
    "balance",
    "buy",
    "subscription",
    "promo",
    "invite",
    "history",
    "cancel",
    "help",
    "language",
    "paysupport",
    "terms",
)


def menus() -> dict[str, tuple[tuple[str, str], ...]]:
    """(command, description) per Telegram language code; "" (English) is every other language's.

    Telegram keys menus by two-letter code, so of two catalogs of one language (pt_BR, pt_PT)
    the first in LANGUAGES gets it.
    """
    found: dict[str, tuple[tuple[str, str], ...]] = {}
    for lang in LANGUAGES:
        code = "" if lang == DEFAULT else telegram_code(lang)
        found.setdefault(code, tuple((name, t(lang, f"command_{name}")) for name in COMMANDS))
    return found


async def set_commands(client: Client) -> None:
    """Publish the command menu: the default list, then one per language code."""
    for language_code, commands in menus().items():
        await client.set_bot_commands(
            [types.BotCommand(name, description) for name, description in commands],
            scope=types.BotCommandScopeDefault(),
            language_code=language_code,
        )
