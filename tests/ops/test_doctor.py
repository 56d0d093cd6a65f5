"""`flick doctor`: every check passes on the embedded services with the fake providers, and each
broken part gets its own failing line with what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from flick.doctor import doctor
from flick.settings import Settings
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.services import postgres_dir

KEY, TOKEN = "sk-doctor-test", "r8_doctor-test"


@pytest.fixture(autouse=True)
def _no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor checks the .env of its working directory: not the developer's."""
    monkeypatch.chdir(tmp_path)


def settings(
    tmp_path: Path, openai: FakeOpenAI, replicate: FakeReplicate, **extra: object
) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "var",
        "openai_api_key": SecretStr(KEY),
        "openai_base_url": openai.base_url,
        "replicate_api_token": SecretStr(TOKEN),
        "replicate_base_url": replicate.base_url,
        **extra,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg,arg-type]


async def test_doctor_passes_on_embedded_services_and_fake_providers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The embedded PostgreSQL lives outside /tmp/pytest-of-root (postgres_dir says why): any
    # pytest starting meanwhile would lock its server out in the middle of initdb.
    with postgres_dir(tmp_path) as root:
        async with FakeOpenAI(api_key=KEY) as openai, FakeReplicate(api_token=TOKEN) as replicate:
            code = await doctor(settings(root, openai, replicate), telegram=False)
            assert openai.violations == [] and replicate.violations == []
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    names = [line.split("]", 1)[1].split(":", 1)[0].strip() for line in lines]
    assert names == [
        "settings",
        "files",
        "database",
        "storage",
        "image provider",
        "video provider",
    ]
    assert all(line.startswith("[ok  ]") for line in lines)


async def test_doctor_names_each_broken_part_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeOpenAI(api_key=KEY) as openai, FakeReplicate(api_token=TOKEN) as replicate:
        broken = settings(
            tmp_path,
            openai,
            replicate,
            openai_api_key=SecretStr("sk-wrong"),
            replicate_api_token=SecretStr("r8_wrong"),
            database_url=SecretStr("postgresql://flick:pw-secret@127.0.0.1:1/flick"),
            s3_endpoint="127.0.0.1:1",
            s3_access_key=SecretStr("a"),
            s3_secret_key=SecretStr("s3-secret"),
        )
        code = await doctor(broken, telegram=True)
    out = capsys.readouterr().out
    assert code == 1
    failing = {
        line.split("]", 1)[1].split(":", 1)[0].strip(): line
        for line in out.splitlines()
        if line.startswith("[FAIL]")
    }
    assert set(failing) == {"database", "storage", "image provider", "video provider", "telegram"}
    assert "DATABASE_URL" in failing["database"]
    assert "S3_ENDPOINT" in failing["storage"]
    assert "OPENAI_API_KEY" in failing["image provider"]
    assert "REPLICATE_API_TOKEN" in failing["video provider"]
    assert "BOT_TOKEN" in failing["telegram"]
    for secret in ("pw-secret", "s3-secret", "sk-wrong", "r8_wrong"):
        assert secret not in out


async def test_doctor_names_each_secret_file_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / ".env"
    env.write_text(f"OPENAI_API_KEY={KEY}\n")
    env.chmod(0o644)
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)  # made by hand, or by an older Flick under umask 022
    session = data_dir / "flick-bot-1.session"
    session.write_bytes(b"authorization key")
    session.chmod(0o644)
    async with FakeOpenAI(api_key=KEY) as openai, FakeReplicate(api_token=TOKEN) as replicate:
        code = await doctor(settings(tmp_path, openai, replicate), telegram=False)
    out = capsys.readouterr().out
    assert code == 1
    files = [line for line in out.splitlines() if line.startswith("[FAIL] files:")]
    assert len(files) == 3, out
    for path, fix in ((data_dir, "chmod 700"), (session, "chmod 600"), (env, "chmod 600")):
        assert any(f" {path} " in line and f"{fix} {path}" in line for line in files), path
    assert KEY not in out
