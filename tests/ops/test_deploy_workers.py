"""The workers' deployment files: Compose's scalable `worker` service and the systemd template.

Parsed, not run: the test machines have neither a Docker engine nor systemd (as in
test_deploy_files.py).
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flick.settings import Settings
from flick.worker import STOP_SECONDS

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {name.upper() for name in Settings.model_fields}
UNIT = ROOT / "deploy" / "flick-worker@.service"
#: What only the gateway needs: a worker talks to no Telegram.
TELEGRAM_SECRETS = ("BOT_TOKEN", "API_HASH")


def services(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return dict(data["services"])


def worker_settings(environment: dict[str, str]) -> Settings:
    """What the worker service's environment makes of Settings; `${…}` values are the
    operator's (a URL for DATABASE_URL, a host:port for S3_ENDPOINT)."""
    values: dict[str, Any] = {k.lower(): v for k, v in environment.items()}
    if "${" in values["database_url"]:
        values["database_url"] = "postgresql://flick:pw@db:5432/flick"
    if "${" in values["s3_endpoint"]:
        values["s3_endpoint"] = "s3.internal:9000"
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def image_healthcheck_port() -> int:
    """The port the image's HEALTHCHECK asks for /healthz on, inside the container."""
    text = (ROOT / "Dockerfile").read_text()
    (port,) = re.findall(r"http://127\.0\.0\.1:(\d+)/healthz", text)
    return int(port)


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.external.yml"])
def test_compose_worker_is_scalable_and_runs_only_flick_worker(name: str) -> None:
    found = services(name)
    worker, flick = found["worker"], found["flick"]
    assert worker["command"] == ["flick", "worker"]
    assert worker["image"] == flick["image"]
    # The gateway's configuration: a worker with other styles or models refuses every job.
    assert worker["env_file"] == flick["env_file"] == ".env"
    # `up -d` starts none: the operator asks for them (--profile workers, or names `worker`).
    assert worker["profiles"] == ["workers"]
    assert "profiles" not in flick
    # `--scale worker=N`: a fixed name, a host port or a shared named volume would clash.
    for key in ("container_name", "ports", "volumes", "deploy"):
        assert key not in worker, key
    assert worker["restart"] == flick["restart"]
    assert worker["init"] is True
    # The stop hands generations back after at most STOP_SECONDS; then some margin.
    assert seconds(worker["stop_grace_period"]) >= 2 * STOP_SECONDS


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.external.yml"])
def test_compose_worker_shares_the_gateways_services_and_never_sees_telegram(name: str) -> None:
    found = services(name)
    worker, flick = found["worker"], found["flick"]
    env = worker["environment"]
    assert set(env) <= FIELDS
    for shared in ("DATABASE_URL", "S3_ENDPOINT"):
        assert env[shared] == flick["environment"][shared], shared
    settings = worker_settings(env)
    assert not settings.embedded_database  # a worker refuses to start without them
    assert not settings.embedded_storage
    assert settings.data_dir == Path("/data")  # the image's VOLUME: per replica
    for secret in TELEGRAM_SECRETS:
        assert env[secret] == "", secret  # blanks what .env may hold
    # The image's HEALTHCHECK works as it is: the worker serves /healthz where it asks.
    assert "healthcheck" not in worker
    assert settings.health_address == f"0.0.0.0:{image_healthcheck_port()}"


def test_compose_worker_starts_after_migrations_and_bucket() -> None:
    found = services("docker-compose.yml")
    assert found["worker"]["depends_on"] == found["flick"]["depends_on"]


def test_compose_external_worker_requires_external_services() -> None:
    env = services("docker-compose.external.yml")["worker"]["environment"]
    for name in ("DATABASE_URL", "S3_ENDPOINT"):
        assert env[name].startswith(f"${{{name}:?"), name


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) in file order: a unit may repeat a key (EnvironmentFile=)."""
    entries, section = [], ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key, value))
    return entries


def service_values(key: str) -> list[str]:
    return [value for section, k, value in unit_entries() if section == "Service" and k == key]


def test_systemd_worker_unit_runs_flick_worker_per_instance() -> None:
    (exec_start,) = service_values("ExecStart")
    program, *args = exec_start.split()
    assert program.endswith("/.venv/bin/flick")
    assert args == ["worker"]
    # Each instance its own data directory, the only place it may write.
    assert service_values("Environment") == ["DATA_DIR=/var/lib/flick-worker/%i"]
    assert service_values("StateDirectory") == ["flick-worker/%i"]
    assert service_values("ReadWritePaths") == ["/var/lib/flick-worker/%i"]
    # The gateway's configuration, then what is the instance's own (a later file wins).
    assert service_values("EnvironmentFile") == [
        "/etc/flick/flick.env",
        "-/etc/flick/worker-%i.env",
    ]
    assert service_values("UnsetEnvironment") == [" ".join(TELEGRAM_SECRETS)]
    (timeout,) = service_values("TimeoutStopSec")
    assert float(timeout) >= 2 * STOP_SECONDS


def test_systemd_worker_unit_is_hardened_like_the_gateways() -> None:
    gateway = configparser.ConfigParser(strict=False, interpolation=None)
    gateway.optionxform = str  # type: ignore[assignment,method-assign]
    gateway.read(ROOT / "deploy" / "flick.service")
    ours = {key: value for section, key, value in unit_entries() if section == "Service"}
    # Only what the embedded servers need differs (a runtime directory for PostgreSQL), and what
    # makes an instance its own.
    per_process = {
        "Environment",
        "EnvironmentFile",
        "ExecStart",
        "StateDirectory",
        "ReadWritePaths",
        "RuntimeDirectory",
        "RuntimeDirectoryMode",
        "TimeoutStopSec",
    }
    for key, value in gateway["Service"].items():
        if key not in per_process:
            assert ours.get(key) == value, key
    assert ours["User"] not in ("", "root", "0")
    install = {key: value for section, key, value in unit_entries() if section == "Install"}
    assert install == dict(gateway["Install"])


def test_deploy_docs_tell_how_to_run_workers() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "## Workers" in docs
    for words in (
        "--profile workers",
        "--scale worker=",
        "flick-worker@",
        "worker-%i.env",
        "GATEWAY_GENERATES=false",
        "WORK_HEARTBEAT_SECONDS",
        "worker ready:",
        '"worker": "ok"',
    ):
        assert words in docs, words
