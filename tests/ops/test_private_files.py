"""Private files whatever the umask: a fresh data directory is 0700 and every secret in it 0600;
`flick run` warns, naming the file, when a secret file or a `.env` with secrets is readable by
others (`flick doctor`'s side is in test_doctor.py)."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from pyrogram.storage import SQLiteStorage

from flick.embedded import DataDirLock, EmbeddedSeaweed, prepare_data_dir
from flick.errors import FlickError
from flick.private_files import SECRET_FILES, exposures
from flick.runtime import serve
from flick.settings import Settings
from flick.telegram.client import build_client, session_name
from flick.telegram.session_file import PrivateSessionStorage

LogCapture = Callable[..., io.StringIO]
BOT_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
API_HASH = "c0ffee5eed0123456789abcdefabcdef"


def telegram_settings(data_dir: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "api_id": 12345,
        "api_hash": SecretStr(API_HASH),
        "bot_token": SecretStr(BOT_TOKEN),
        **extra,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg,arg-type]


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000], indirect=True, ids=["umask022", "umask000"])
async def test_a_fresh_data_dir_is_private(tmp_path: Path, umask: int) -> None:
    data_dir = tmp_path / "var"  # does not exist yet: Flick makes it
    prepare_data_dir(data_dir)
    with DataDirLock(data_dir):
        async with EmbeddedSeaweed(data_dir):
            pass
        client = build_client(telegram_settings(data_dir))
        await client.storage.open()  # creates the session file, as `flick run` does
        await client.storage.auth_key(b"\x01" * 256)
        await client.storage.save()
        await client.storage.close()

    secrets = sorted({p for pattern in SECRET_FILES for p in data_dir.glob(pattern)})
    names = {p.relative_to(data_dir).as_posix() for p in secrets}
    session = f"{session_name(BOT_TOKEN)}.session"
    assert {session, "seaweed/s3.json", "seaweed/security.toml", "seaweed/tls/weed.key"} <= names
    assert mode(data_dir) == 0o700
    for path in secrets:
        assert mode(path) == 0o600, path
    for path in (data_dir, *data_dir.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            # Whatever weed or Flick keep inside (photos, the database), others cannot reach it.
            assert mode(path) & 0o077 == 0, (path, oct(mode(path)))
    assert exposures(data_dir, envs=()) == []


async def test_the_session_keeps_its_key_and_an_old_session_still_opens(tmp_path: Path) -> None:
    new: SQLiteStorage = PrivateSessionStorage("fresh", workdir=tmp_path)
    await new.open()
    await new.auth_key(b"\x02" * 256)
    await new.save()
    await new.close()
    again: SQLiteStorage = PrivateSessionStorage("fresh", workdir=tmp_path)
    await again.open()
    assert await again.auth_key() == b"\x02" * 256
    await again.close()

    old = SQLiteStorage("old", workdir=tmp_path)  # a session made before Flick chose its mode
    await old.open()
    await old.auth_key(b"\x03" * 256)
    await old.save()
    await old.close()
    reopened: SQLiteStorage = PrivateSessionStorage("old", workdir=tmp_path)
    await reopened.open()
    assert await reopened.auth_key() == b"\x03" * 256
    await reopened.close()


def test_exposures_name_each_readable_secret(tmp_path: Path) -> None:
    data_dir = prepare_data_dir(tmp_path / "var")
    session = data_dir / "flick-bot-1.session"
    session.write_bytes(b"authorization key")
    session.chmod(0o644)
    group_only = data_dir / "seaweed" / "s3.json"
    group_only.parent.mkdir(mode=0o700)
    group_only.write_text("{}")
    group_only.chmod(0o640)
    env, harmless, shared, commented = (tmp_path / n for n in ("a.env", "b.env", "c.env", "d.env"))
    env.write_text(f"LOG_LEVEL=INFO\nexport BOT_TOKEN='{BOT_TOKEN}'\n")
    harmless.write_text("LOG_LEVEL=INFO\nBOT_TOKEN=\n")  # no secret set
    shared.write_text(f"BOT_TOKEN={BOT_TOKEN}\n")
    commented.write_text(f"# BOT_TOKEN={BOT_TOKEN}\n")
    for path, bits in ((env, 0o644), (harmless, 0o644), (shared, 0o640), (commented, 0o644)):
        path.chmod(bits)

    found = exposures(data_dir, envs=(env, harmless, shared, commented))
    assert [(e.path, e.fix) for e in found] == [
        (session, f"chmod 600 {session}"),
        (group_only, f"chmod 600 {group_only}"),  # Flick's own: its group has no business either
        (env, f"chmod 600 {env}"),  # an operator's .env may be shared with a group (0640)
    ]
    assert "(mode 0644)" in str(found[0]) and BOT_TOKEN not in "".join(map(str, found))

    data_dir.chmod(0o755)
    assert next(e.fix for e in exposures(data_dir, envs=())) == f"chmod 700 {data_dir}"


async def test_flick_run_warns_naming_each_readable_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capture_logs: LogCapture
) -> None:
    monkeypatch.chdir(tmp_path)
    env = tmp_path / ".env"
    env.write_text(f"BOT_TOKEN={BOT_TOKEN}\nAPI_HASH={API_HASH}\n")
    env.chmod(0o644)
    data_dir = prepare_data_dir(tmp_path / "var")
    session = data_dir / f"{session_name(BOT_TOKEN)}.session"
    session.write_bytes(b"")
    session.chmod(0o604)
    values = {
        "data_dir": data_dir,
        "api_id": 12345,
        "api_hash": SecretStr(API_HASH),
        "bot_token": SecretStr(BOT_TOKEN),
        # Unreachable: `flick run` stops right after its checks, before any Telegram traffic.
        "database_url": SecretStr("postgresql://flick:pw@127.0.0.1:1/flick"),
        "s3_endpoint": "127.0.0.1:1",
    }
    logs = capture_logs(**values)
    with pytest.raises(FlickError):
        await asyncio.wait_for(serve(telegram_settings(**values), asyncio.Event()), 60)  # type: ignore[arg-type]
    out = logs.getvalue()
    warnings = [line for line in out.splitlines() if "WARNING" in line and "readable" in line]
    assert any(str(env) in line and f"chmod 600 {env}" in line for line in warnings), out
    assert any(str(session) in line and "(mode 0604)" in line for line in warnings), out
    assert BOT_TOKEN not in out and API_HASH not in out
