"""Errors that name their cause: a protocol layer mismatch, a revoked token and a wrong
API_ID/API_HASH each get one line saying which and what to do, without a secret in it."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from flick.errors import ServiceError
from flick.settings import Settings
from flick.telegram.client import build_client
from flick.telegram.diagnosis import PROTOCOL
from flick.telegram.gateway import connect
from flick.testing.telegram import OfflineTelegram, errors, raw
from flick.testing.telegram.offline_login import (
    UNKNOWN_CONSTRUCTOR,
    attach_offline,
    feed_unknown_constructor,
)

TOKEN = "123456:AAE-secret-token-value"
API_HASH = "0123456789abcdef0123456789abcdef"
LOGIN = raw.functions.auth.ImportBotAuthorization
STATE = raw.functions.updates.GetState


def settings_for(data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_id=12345,
        api_hash=SecretStr(API_HASH),
        bot_token=SecretStr(TOKEN),
        data_dir=data_dir,
    )


def assert_one_clean_line(line: str) -> None:
    assert "\n" not in line
    for secret in (TOKEN, TOKEN.split(":")[1], API_HASH):
        assert secret not in line


@pytest.mark.parametrize(
    ("error", "authorized", "request_type", "cause", "setting", "fix"),
    [
        (
            errors.AccessTokenInvalid,
            False,
            LOGIN,
            "ACCESS_TOKEN_INVALID",
            "BOT_TOKEN",
            "@BotFather",
        ),
        (
            errors.AccessTokenExpired,
            False,
            LOGIN,
            "ACCESS_TOKEN_EXPIRED",
            "BOT_TOKEN",
            "@BotFather",
        ),
        (errors.AuthKeyUnregistered, True, STATE, "AUTH_KEY_UNREGISTERED", "BOT_TOKEN", "delete"),
        (errors.ApiIdInvalid, False, LOGIN, "API_ID_INVALID", "API_ID and API_HASH", "my.telegram"),
        (
            errors.ApiIdPublishedFlood,
            False,
            LOGIN,
            "API_ID_PUBLISHED_FLOOD",
            "API_ID and API_HASH",
            "create your own app",
        ),
    ],
)
async def test_a_refused_login_names_its_cause_and_what_to_do(
    tmp_path: Path,
    error: type[Exception],
    authorized: bool,
    request_type: type[Any],
    cause: str,
    setting: str,
    fix: str,
) -> None:
    async with OfflineTelegram() as tg:
        client = build_client(settings_for(tmp_path))
        attach_offline(client, tg.server, authorized=authorized)
        tg.fail_next(request_type, error)
        with pytest.raises(ServiceError) as caught:
            await connect(client, 10)
        (failed,) = [e for e in tg.exchanges if e.error is not None]
    # kurigram's own login sent the request and raised Telegram's answer as its error class.
    assert isinstance(failed.request, request_type) and isinstance(failed.error, error)
    line = str(caught.value)
    assert cause in line and fix in line and line.endswith(f"(check {setting})")
    assert not line.startswith("cannot connect")  # not reported as the network
    assert_one_clean_line(line)
    if cause == "AUTH_KEY_UNREGISTERED":  # the file to delete, named exactly
        assert str(tmp_path / "flick-bot-123456.session") in line
    assert not client.is_connected


async def test_a_protocol_layer_mismatch_is_named_not_blamed_on_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PROTOCOL, "constructor", None)  # as in a fresh process
    client = build_client(settings_for(tmp_path))
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")

    async def start() -> None:
        # Telegram answers in a layer this kurigram does not know: its session drops the packet
        # it cannot read and restarts, and the request waiting for that answer times out.
        await feed_unknown_constructor(client)
        await feed_unknown_constructor(client)
        raise TimeoutError("Request timed out")

    monkeypatch.setattr(client, "start", start)
    try:
        with pytest.raises(ServiceError) as caught:
            await connect(client, 10)
    finally:
        logger.remove(sink)
    line = str(caught.value)
    assert line.startswith("Telegram speaks a newer protocol than kurigram ")
    assert hex(UNKNOWN_CONSTRUCTOR) in line and "upgrade kurigram" in line
    assert_one_clean_line(line)
    # kurigram's session logger is back at its own level: a DEBUG set later shows everything.
    assert logging.getLogger("pyrogram.session.session").level == logging.NOTSET
    # The log says it too, once for the constructor, not once per dropped packet.
    assert len([x for x in lines if hex(UNKNOWN_CONSTRUCTOR) in x]) == 1


async def test_an_unknown_constructor_in_the_handshake_is_a_protocol_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = build_client(settings_for(tmp_path))

    async def start() -> None:
        # What kurigram's handshake reader raises for an id it has no class for.
        raw.core.TLObject.read(io.BytesIO(UNKNOWN_CONSTRUCTOR.to_bytes(4, "little")))

    monkeypatch.setattr(client, "start", start)
    with pytest.raises(ServiceError) as caught:
        await connect(client, 10)
    line = str(caught.value)
    assert line.startswith("Telegram speaks a newer protocol") and hex(UNKNOWN_CONSTRUCTOR) in line


async def test_a_timeout_without_an_unreadable_packet_is_still_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = build_client(settings_for(tmp_path))

    async def start() -> None:
        raise TimeoutError

    monkeypatch.setattr(client, "start", start)
    with pytest.raises(ServiceError) as caught:
        await connect(client, 10)
    assert str(caught.value).startswith("cannot connect to Telegram: ")
