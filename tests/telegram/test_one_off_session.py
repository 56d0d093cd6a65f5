"""`flick doctor` and `flick payments reconcile` beside a gateway, with either SESSION_STORE:
they borrow the session the gateway stored (no new sign-in), ask Telegram to push them no
updates, and leave the gateway's saved update state and auth key as they were.

Real parts: the commands themselves, the production client (kurigram's own start and stop) on
the offline Telegram, the real test PostgreSQL, SeaweedFS and the provider fakes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pyrogram.storage import UpdateState

from flick import runtime
from flick.doctor import doctor
from flick.embedded import EmbeddedSeaweed
from flick.models import db, migrations
from flick.settings import Settings
from flick.telegram import client as telegram_client
from flick.telegram.client import session_name, session_storage
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.telegram import OfflineTelegram, raw
from flick.testing.telegram.offline_login import attach_offline

API_HASH = "c0ffee5eed0123456789abcdefabcdef"
GATEWAY_KEY = bytes(range(256))  # the auth key the gateway signed in with
GATEWAY_PTS = 4242


@pytest.fixture(autouse=True)
def _no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the doctor reads the .env of its working directory


@pytest.fixture
async def migrated(database_url: str) -> str:
    async with db.connection_pool(database_url, 1, 2):
        await migrations.apply()
    return database_url


@pytest.fixture(params=["database", "file"])
async def services(
    request: pytest.FixtureRequest, migrated: str, seaweed: EmbeddedSeaweed, tmp_path: Path
) -> AsyncIterator[Settings]:
    """Settings with the session in PostgreSQL (and no session file on this host), or in the
    session file in DATA_DIR."""
    token = f"{7_100_000_000 + uuid.uuid4().int % 1_000_000}:one-off-test-token"
    async with (
        FakeOpenAI(api_key="sk-one-off") as openai,
        FakeReplicate(api_token="r8_one_off") as replicate,
    ):
        yield Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=tmp_path / "var",
            openai_api_key=SecretStr("sk-one-off"),
            openai_base_url=openai.base_url,
            replicate_api_token=SecretStr("r8_one_off"),
            replicate_base_url=replicate.base_url,
            database_url=SecretStr(migrated),
            s3_endpoint=seaweed.endpoint,
            s3_access_key=SecretStr(seaweed.access_key),
            s3_secret_key=SecretStr(seaweed.secret_key),
            s3_bucket=f"one-off-{uuid.uuid4().hex[:8]}",
            api_id=12345,
            api_hash=SecretStr(API_HASH),
            bot_token=SecretStr(token),
            session_store=request.param,
        )


async def store_gateway_session(settings: Settings, bot_id: int) -> None:
    """What an active gateway leaves in the database: its signed-in session and the update
    state it saved."""
    assert settings.database_url is not None
    async with db.connection_pool(settings.database_url.get_secret_value(), 1, 2):
        storage: Any = session_storage(settings)
        await storage.open()
        for field, value in (
            ("dc_id", 2),
            ("api_id", 12345),
            ("test_mode", False),
            ("auth_key", GATEWAY_KEY),
            ("user_id", bot_id),
            ("is_bot", True),
        ):
            await getattr(storage, field)(value)
        await storage.set_update_state(UpdateState(0, GATEWAY_PTS, 7, 1_700_000_000, 3))
        await storage.save()


async def stored(settings: Settings) -> Any:
    """The session as stored: the database's rows (the session row and the update states), or
    the session file's bytes; None when nothing is."""
    assert settings.database_url is not None and settings.bot_token is not None
    name = session_name(settings.bot_token.get_secret_value())
    if settings.session_store == "file":
        path = settings.data_dir / f"{name}.session"
        return path.read_bytes() if path.exists() else None
    async with db.connection_pool(settings.database_url.get_secret_value(), 1, 2):
        session = await db.pool().fetchrow("SELECT * FROM telegram_sessions WHERE name = $1", name)
        states = await db.pool().fetch(
            "SELECT * FROM telegram_update_states WHERE session = $1 ORDER BY state_id", name
        )
    if session is None:
        assert states == []
        return None
    return dict(session), [dict(s) for s in states]


async def saved_pts(settings: Settings) -> int | None:
    """The pts a gateway would resume from, read through the production storage."""
    assert settings.database_url is not None
    async with db.connection_pool(settings.database_url.get_secret_value(), 1, 2):
        storage: Any = session_storage(settings)
        await storage.open()
        try:
            states = await storage.get_update_states(0)
        finally:
            await storage.close()
    return states[0].pts if states else None


def offline(monkeypatch: pytest.MonkeyPatch, where: Any, tg: OfflineTelegram) -> None:
    """The production client, connected to the offline Telegram with what its storage holds."""
    real_build = telegram_client.build_client

    def build_offline(settings: Settings, *args: Any, **options: Any) -> Any:
        client = real_build(settings, *args, **options)
        attach_offline(client, tg.server, authorized=None)
        return client

    monkeypatch.setattr(where, "build_client", build_offline)


def assert_borrowed(tg: OfflineTelegram) -> None:
    """The command used the stored session: no sign-in, no log-out, and no request of its
    subscribed its connection to the bot's updates."""
    assert tg.exchanges, "the command never reached Telegram"
    signed = tg.sent(
        (raw.functions.auth.ImportBotAuthorization, raw.functions.auth.LogOut), ok=None
    )
    assert signed == []
    assert [e.request.QUALNAME for e in tg.exchanges if e.wants_updates] == []


async def test_doctor_checks_telegram_with_the_gateways_stored_session(
    services: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with OfflineTelegram() as tg:
        await store_gateway_session(services, tg.bot.id)
        before = await stored(services)
        offline(monkeypatch, telegram_client, tg)
        tg.server.exchanges.clear()  # the offline Telegram's own start-up
        await doctor(services, telegram=True)
    out = capsys.readouterr().out
    assert "[ok  ] telegram: logged in as @flick_test_bot" in out.splitlines()
    assert_borrowed(tg)
    assert await stored(services) == before
    assert await saved_pts(services) == GATEWAY_PTS


async def test_reconcile_reads_the_stars_history_with_the_gateways_stored_session(
    services: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with OfflineTelegram() as tg:
        await store_gateway_session(services, tg.bot.id)
        before = await stored(services)
        offline(monkeypatch, runtime, tg)
        bob = tg.user(6101, "Bob")
        tg.payment(bob, payload="order:lost", total_amount=225, charge_id="stx-one-off")
        tg.server.exchanges.clear()
        code = await runtime.reconcile_command(services)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Stars transactions read: 1" in out
    assert tg.sent(raw.functions.payments.GetStarsTransactions)
    assert_borrowed(tg)
    assert await stored(services) == before
    assert await saved_pts(services) == GATEWAY_PTS


async def test_a_one_off_with_no_stored_session_signs_in_without_updates_and_logs_out(
    services: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before any gateway ran: the doctor still checks the credentials, with a session of its
    own that asks for no updates, is logged out at the end and is stored nowhere."""
    async with OfflineTelegram() as tg:
        offline(monkeypatch, telegram_client, tg)
        tg.server.exchanges.clear()
        await doctor(services, telegram=True)
    out = capsys.readouterr().out
    assert "[ok  ] telegram: logged in as @flick_test_bot" in out.splitlines()
    requests = [type(e.request) for e in tg.exchanges]
    assert raw.functions.auth.ImportBotAuthorization in requests
    assert requests[-1] is raw.functions.auth.LogOut
    assert [e for e in tg.exchanges if e.wants_updates] == []
    # Nothing stored, not even an empty session: the first gateway still finds none, and
    # imports its session file if it has one.
    assert await stored(services) is None
