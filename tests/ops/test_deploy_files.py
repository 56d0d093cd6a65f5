"""The deployment files agree with Settings and carry the settings operators rely on.

`docker compose config` and `systemd-analyze verify` need a Docker engine and systemd, which the
test machines lack; these tests parse the files instead.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flick.ops.logging import SECRET_FIELDS
from flick.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {name.upper() for name in Settings.model_fields}
# A variable line in .env.example: NAME=value, commented out or not.
VARIABLE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$")
# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME:?message}; $$ escapes it.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)")
# The one variable Compose reads that is not a Flick setting (documented in docs/deploy.md).
COMPOSE_ONLY = {"POSTGRES_PASSWORD"}


def make_settings(**values: Any) -> Settings:
    """Settings from explicit values only: a developer's .env must not leak into the tests."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def env_example() -> dict[str, str]:
    found: dict[str, str] = {}
    previous = ""
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = VARIABLE.match(line)
        if match:
            name, value = match.groups()
            assert name not in found, f"{name} listed twice"
            assert previous.startswith("#"), f"{name} has no comment above it"
            found[name] = value
        previous = line
    return found


def compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def bot_settings(environment: dict[str, str]) -> Settings:
    """What a bot service's environment makes of Settings; `${…}` values are the operator's."""
    values = {k.lower(): "operator" if "${" in v else v for k, v in environment.items()}
    if "database_url" in values:
        values["database_url"] = "postgresql://flick:pw@db:5432/flick"
    return make_settings(**values)


def test_env_example_names_exactly_the_settings() -> None:
    names = set(env_example())
    assert names - FIELDS == set(), "unknown in .env.example"
    assert FIELDS - names == set(), "missing from .env.example"


def test_env_example_leaves_secrets_empty() -> None:
    values = env_example()
    for field in (*SECRET_FIELDS, "database_url"):
        assert values[field.upper()] == "", field


def test_env_example_defaults_are_the_real_defaults(tmp_path: Path) -> None:
    # Uncomment every example value that is given and load it: it must parse and equal the default.
    given = {name: value for name, value in env_example().items() if value}
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in given.items()))
    loaded = Settings(_env_file=env_file)  # type: ignore[call-arg]
    default = make_settings()
    for name in given:
        field = name.lower()
        assert getattr(loaded, field) == getattr(default, field), name


def test_compose_passes_only_settings_to_flick() -> None:
    services = compose()["services"]
    assert services["flick"]["env_file"] == ".env"
    for name in ("flick", "migrate", "createbucket"):
        assert set(services[name]["environment"]) <= FIELDS, name
    env = services["flick"]["environment"]
    assert env["DATA_DIR"] == "/data"
    assert env["HEALTH_ADDRESS"] == "0.0.0.0:8080"
    assert env["S3_ENDPOINT"] == "minio:9000"
    assert env["DATABASE_URL"].startswith("postgresql://")


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.external.yml"])
def test_compose_interpolates_only_known_variables(name: str) -> None:
    used = set(INTERPOLATION.findall((ROOT / name).read_text()))
    assert used <= FIELDS | COMPOSE_ONLY
    assert "POSTGRES_PASSWORD" in (ROOT / "docs" / "deploy.md").read_text()


def test_compose_starts_flick_after_migrations_and_bucket() -> None:
    services = compose()["services"]
    depends = services["flick"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["createbucket"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["minio"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["piccolo", "migrations", "forwards", "all"]
    assert services["migrate"]["image"] == services["flick"]["image"]
    assert services["postgres"]["image"] == "postgres:16"
    for name in ("postgres", "minio"):
        assert "test" in services[name]["healthcheck"], name


def test_compose_keeps_data_in_named_volumes() -> None:
    data = compose()
    declared = set(data["volumes"])
    for name in ("postgres", "minio", "flick"):
        mounts = data["services"][name]["volumes"]
        sources = {mount.split(":", 1)[0] for mount in mounts}
        assert sources <= declared, name
        assert sources, name


def test_compose_standby_is_a_second_bot_with_data_and_port_of_its_own() -> None:
    data = compose()
    flick, standby = data["services"]["flick"], data["services"]["flick-standby"]
    assert standby["profiles"] == ["standby"]  # only with --profile standby
    assert "profiles" not in flick
    # The same bot: image, configuration, start order, drain time.
    for key in ("image", "env_file", "environment", "depends_on", "stop_grace_period", "init"):
        assert standby[key] == flick[key], key
    # Election and takeover need the shared database and the session in it.
    assert bot_settings(flick["environment"]).session_store == "database"
    assert not bot_settings(flick["environment"]).embedded_database
    # Flick locks its data directory while it serves: never the active gateway's volume.
    assert standby["volumes"] == ["flick-standby-data:/data"]
    assert "flick-standby-data" in data["volumes"]
    assert standby["ports"] != flick["ports"]
    assert standby["ports"][0].endswith(":8080")
    assert standby["ports"][0].startswith("127.0.0.1:")


def test_compose_external_runs_only_flick_against_shared_services() -> None:
    data = compose("docker-compose.external.yml")
    services = data["services"]
    # The bot, its migrations, its workers (tests/ops/test_deploy_workers.py): no database or S3.
    assert set(services) == {"flick", "migrate", "worker"}
    flick, migrate = services["flick"], services["migrate"]
    assert set(flick["environment"]) <= FIELDS
    assert set(migrate["environment"]) == {"DATABASE_URL"}
    settings = bot_settings(flick["environment"])
    assert settings.session_store == "database"
    assert settings.data_dir == Path("/data")
    # Without them Flick would embed a database and storage no other host can share:
    # Compose refuses to start (`:?`) rather than start a lone gateway.
    for name in ("DATABASE_URL", "S3_ENDPOINT"):
        assert flick["environment"][name].startswith(f"${{{name}:?"), name
    assert not settings.embedded_database
    assert not settings.embedded_storage
    # Migrations by hand from one host (run --rm migrate), never at every host's `up`.
    assert migrate["profiles"] == ["migrate"]
    assert migrate["command"] == ["piccolo", "migrations", "forwards", "all"]
    assert migrate["image"] == flick["image"] == compose()["services"]["flick"]["image"]
    assert flick["env_file"] == ".env"
    assert flick["stop_grace_period"] == compose()["services"]["flick"]["stop_grace_period"]
    assert flick["ports"] == ["127.0.0.1:8080:8080"]
    assert {mount.split(":", 1)[0] for mount in flick["volumes"]} <= set(data["volumes"])


@pytest.fixture
def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "deploy" / "flick.service")
    return parser


def test_systemd_unit(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["EnvironmentFile"] == "/etc/flick/flick.env"
    assert service["Restart"] == "on-failure"
    assert int(service["TimeoutStopSec"]) >= 60
    assert service["KillSignal"] == "SIGTERM"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert "/var/lib/flick" in service["ReadWritePaths"].split()
    assert service["User"] not in ("", "root", "0")
    assert service["WorkingDirectory"].startswith("/")
    program, *args = service["ExecStart"].split()
    assert program.endswith("/.venv/bin/flick")
    assert args == ["run"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_data_dir_is_the_writable_path() -> None:
    lines = (ROOT / "deploy" / "flick.service").read_text().splitlines()
    assert "Environment=DATA_DIR=/var/lib/flick" in lines


def test_systemd_unit_is_the_same_on_every_gateway_host() -> None:
    # A standby runs this same unit on a second host: what tells them apart, or makes them a
    # pair (DATABASE_URL, SESSION_STORE, HEALTH_ADDRESS), belongs in flick.env, not here.
    lines = (ROOT / "deploy" / "flick.service").read_text().splitlines()
    set_here = {line.split("=", 2)[1] for line in lines if line.startswith("Environment=")}
    assert set_here == {"DATA_DIR", "XDG_RUNTIME_DIR"}
    assert "SESSION_STORE=database" in "\n".join(lines)  # the standby comment


def test_deploy_docs_name_every_compose_service_and_file() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for name in ("docker-compose.yml", "docker-compose.external.yml"):
        assert f"`{name}`" in docs, name
        for service in compose(name)["services"]:
            assert f"`{service}`" in docs, (name, service)
    assert "--profile standby" in docs
    assert '"gateway": "standby"' in docs


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile() -> None:
    steps = dockerfile()
    keywords = [keyword for keyword, _ in steps]
    assert all(args.split()[0] == "python:3.11-slim" for k, args in steps if k == "FROM")
    users = [args for k, args in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    (healthcheck,) = [args for k, args in steps if k == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    (volume,) = [args for k, args in steps if k == "VOLUME"]
    assert "/data" in volume
    env = " ".join(args for k, args in steps if k == "ENV")
    assert "DATA_DIR=/data" in env
    assert "HEALTH_ADDRESS=0.0.0.0:8080" in env
    (cmd,) = [args for k, args in steps if k == "CMD"]
    assert json.loads(cmd) == ["flick", "run"]


def test_dockerfile_installs_dependencies_before_the_source() -> None:
    steps = dockerfile()
    copy_manifest = steps.index(("COPY", "pyproject.toml ./"))
    copy_source = steps.index(("COPY", ". ."))
    install_deps = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install -r" in a)
    assert copy_manifest < install_deps < copy_source


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in (".env", ".git", ".venv", "var"):
        assert pattern in ignored, pattern
