"""`flick doctor` names why Telegram would not let the bot in, in one line with what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from flick.doctor import doctor
from flick.settings import Settings
from flick.telegram import client as telegram_client
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.telegram import OfflineTelegram, errors, raw
from flick.testing.telegram.offline_login import attach_offline

BOT_TOKEN, API_HASH = "654321:AAE-doctor-secret", "fedcba9876543210fedcba9876543210"


@pytest.fixture(autouse=True)
def _no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the doctor reads the .env of its working directory


@pytest.mark.parametrize(
    ("error", "request_type", "expected"),
    [
        (errors.AccessTokenExpired, raw.functions.auth.ImportBotAuthorization, "BOT_TOKEN"),
        (errors.ApiIdInvalid, raw.functions.auth.ImportBotAuthorization, "API_ID and API_HASH"),
    ],
)
async def test_doctor_says_which_login_setting_telegram_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: type[Exception],
    request_type: type[Any],
    expected: str,
) -> None:
    async with (
        FakeOpenAI(api_key="sk-doctor") as openai,
        FakeReplicate(api_token="r8_doctor") as replicate,
        OfflineTelegram() as tg,
    ):
        real_build = telegram_client.build_client

        def build_offline(settings: Settings, **options: Any) -> Any:
            client = real_build(settings, **options)
            attach_offline(client, tg.server, authorized=False)
            return client

        monkeypatch.setattr(telegram_client, "build_client", build_offline)
        tg.fail_next(request_type, error)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "var",
            openai_api_key=SecretStr("sk-doctor"),
            openai_base_url=openai.base_url,
            replicate_api_token=SecretStr("r8_doctor"),
            replicate_base_url=replicate.base_url,
            database_url=SecretStr("postgresql://flick:pw@127.0.0.1:1/flick"),
            s3_endpoint="127.0.0.1:1",
            s3_access_key=SecretStr("a"),
            s3_secret_key=SecretStr("b"),
            api_id=12345,
            api_hash=SecretStr(API_HASH),
            bot_token=SecretStr(BOT_TOKEN),
        )
        code = await doctor(settings, telegram=True)
    out = capsys.readouterr().out
    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("[FAIL] telegram:")]
    assert error.ID in line and line.endswith(f"(check {expected})")  # type: ignore[attr-defined]
    assert "network" not in line
    for secret in (BOT_TOKEN, BOT_TOKEN.split(":")[1], API_HASH):
        assert secret not in out


async def test_doctor_does_not_check_telegram_when_the_database_holding_the_session_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With SESSION_STORE=database the session cannot be read without the database: no
    sign-in in its place (a second session beside the gateway), and the line says why."""
    async with OfflineTelegram() as tg:
        real_build = telegram_client.build_client

        def build_offline(settings: Settings, **options: Any) -> Any:
            client = real_build(settings, **options)
            attach_offline(client, tg.server, authorized=None)
            return client

        monkeypatch.setattr(telegram_client, "build_client", build_offline)
        tg.server.exchanges.clear()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "var",
            database_url=SecretStr("postgresql://flick:pw@127.0.0.1:1/flick"),
            s3_endpoint="127.0.0.1:1",
            s3_access_key=SecretStr("a"),
            s3_secret_key=SecretStr("b"),
            api_id=12345,
            api_hash=SecretStr(API_HASH),
            bot_token=SecretStr(BOT_TOKEN),
            session_store="database",
        )
        code = await doctor(settings, telegram=True)
    out = capsys.readouterr().out
    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("[FAIL] telegram:")]
    assert "SESSION_STORE=database" in line and line.endswith("fix the database first")
    assert tg.exchanges == []
