"""The gateway: wiring on the offline Telegram, the command menu, and failing to connect."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from loguru import logger
from pydantic import SecretStr

from flick.errors import ServiceError
from flick.events import Command, Event, GroupMessage
from flick.i18n import LANGUAGES, t, telegram_code
from flick.settings import Settings
from flick.telegram.client import build_client, session_name
from flick.telegram.gateway import TelegramGateway, connect
from flick.telegram.menu import COMMANDS, set_commands
from flick.testing.memory import MemoryStorage
from flick.testing.telegram import OfflineTelegram, errors, raw, seed_session

TOKEN = "123456:AAE-secret-token-value"
API_HASH = "0123456789abcdef0123456789abcdef"


def settings_for(data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_id=12345,
        api_hash=SecretStr(API_HASH),
        bot_token=SecretStr(TOKEN),
        data_dir=data_dir,
    )


async def test_set_commands_publishes_a_menu_per_catalog(tg: OfflineTelegram) -> None:
    await set_commands(tg.client)
    menus = tg.bot_commands()
    assert set(menus) == {""} | {telegram_code(lang) for lang in LANGUAGES if lang != "en"}
    assert {"ru", "es", "pt", "de", "tr", "uk"} <= set(menus)
    names = [
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
    ]
    assert list(COMMANDS) == names
    for code, menu in menus.items():
        assert [name for name, _ in menu] == names, code
    assert menus["ru"] == [(name, t("ru", f"command_{name}")) for name in names]
    assert menus["pt"] == [(name, t("pt_BR", f"command_{name}")) for name in names]
    assert menus[""] == [(name, t("en", f"command_{name}")) for name in names]
    for exchange in tg.sent(raw.functions.bots.SetBotCommands):
        assert isinstance(exchange.request.scope, raw.types.BotCommandScopeDefault)


async def test_gateway_on_the_offline_telegram(tg: OfflineTelegram) -> None:
    got: list[Event | GroupMessage] = []

    async def dispatch(event: Event | GroupMessage) -> None:
        got.append(event)
        if isinstance(event, Command):
            await gateway.outbox.send_text(event.user.chat_id, "Welcome!")

    gateway = TelegramGateway(tg.client, dispatch, MemoryStorage())
    async with gateway:
        assert {"", "ru", "pt", "uk"} <= set(tg.bot_commands())
        alice = tg.user(1001)
        await tg.push(tg.command(alice, "start"))
        assert tg.texts_to(alice.id) == ["Welcome!"]
    assert [type(e) for e in got] == [Command]
    assert tg.client.is_initialized  # the gateway did not own this connection
    with pytest.raises(RuntimeError):
        await gateway.outbox.send_text(1001, "after stop")


async def test_command_menu_failure_does_not_stop_the_bot(tg: OfflineTelegram) -> None:
    tg.fail_next(raw.functions.bots.SetBotCommands, TimeoutError)

    async def dispatch(event: Event | GroupMessage) -> None:
        pass

    alice = tg.user(1001)
    async with TelegramGateway(tg.client, dispatch, MemoryStorage()) as gateway:
        await gateway.outbox.send_text(alice.id, "still up")

    (failed,) = tg.sent(raw.functions.bots.SetBotCommands, ok=None)  # given up after one try
    assert isinstance(failed.error, TimeoutError)
    assert tg.bot_commands() == {}  # no menu, yet the bot answers
    assert tg.texts_to(alice.id) == ["still up"]


def test_build_client(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = build_client(settings_for(tmp_path / "data"))
    with caplog.at_level(logging.DEBUG, logger="pyrogram"):
        # What kurigram's session logs at DEBUG for the bot's login request.
        logging.getLogger("pyrogram.session.session").debug(
            "Sent: %s", f'{{"bot_auth_token": "{TOKEN}", "api_hash": "{API_HASH}"}}'
        )
    assert TOKEN not in caplog.text and API_HASH not in caplog.text
    assert "[redacted]" in caplog.text
    assert client.name == session_name(TOKEN) == "flick-bot-123456"
    assert client.workdir == tmp_path / "data" and client.workdir.is_dir()
    assert client.api_id == 12345 and client.bot_token == TOKEN
    assert client.parse_mode.name == "DISABLED" and client.sleep_threshold == 0
    assert client.workers == 1 and not client.in_memory and not client.skip_updates


async def test_unreachable_telegram_is_one_service_error_and_leaves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pyrogram")
    await seed_session(tmp_path, TOKEN, server_address="127.0.0.1", port=1)
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")

    async def dispatch(event: Event | GroupMessage) -> None:
        raise AssertionError("no update can arrive")

    before = asyncio.all_tasks()
    gateway = TelegramGateway.from_settings(
        settings_for(tmp_path), dispatch, MemoryStorage(), connect_timeout=2.5
    )
    try:
        with pytest.raises(ServiceError) as caught:
            async with gateway:
                pass
    finally:
        logger.remove(sink)
    message = str(caught.value)
    assert message.startswith("cannot connect to Telegram: ")
    assert "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert TOKEN not in message and TOKEN.split(":")[1] not in "".join(lines) + caplog.text
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()
    assert not gateway.client.is_connected and gateway.client.session is None


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            ConnectionError(),
            "cannot connect to Telegram: the connection failed (network "
            "unreachable or refused) (check the network connection to Telegram)",
        ),
        (
            OSError(101, "Network is unreachable"),
            "cannot connect to Telegram: [Errno 101] "
            "Network is unreachable (check the network connection to Telegram)",
        ),
        (
            errors.AccessTokenInvalid(),
            "Telegram refused the bot token (ACCESS_TOKEN_INVALID): it is mistyped or was "
            "revoked — copy the bot's current token from @BotFather (/mybots → API Token) "
            "(check BOT_TOKEN)",
        ),
        (
            errors.ApiIdInvalid(),
            "Telegram does not know this API_ID/API_HASH pair (API_ID_INVALID) — copy both "
            "from https://my.telegram.org → API development tools (check API_ID and API_HASH)",
        ),
    ],
)
async def test_connect_failures_become_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException, expected: str
) -> None:
    client = build_client(settings_for(tmp_path))

    async def fail() -> None:
        raise failure

    monkeypatch.setattr(client, "start", fail)
    with pytest.raises(ServiceError) as caught:
        await connect(client, 5)
    assert str(caught.value) == expected
