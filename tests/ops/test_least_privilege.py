"""Least privilege in deployment: Compose gives Flick a MinIO user limited to its bucket, never
MinIO's root credentials; the systemd unit keeps its sandbox and makes Flick's files private.

There is no Docker engine or MinIO server on the test machines: the one-shot's real shell script
runs under /bin/sh with a stand-in `mc` that records each call and answers like mc does.
"""

from __future__ import annotations

import configparser
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "telegram-flick"
ENV = {
    "MINIO_ROOT_USER": "minio-admin",
    "MINIO_ROOT_PASSWORD": "root-password-1234",
    "S3_ACCESS_KEY": "flick-bot",
    "S3_SECRET_KEY": "flick-secret-5678",
    "S3_BUCKET": BUCKET,
}
FAKE_MC = r"""#!/bin/sh
# Records each call; keeps what `admin policy create` was given; refuses a second attach of the
# same policy the way MinIO does (exit 1, "already in effect").
echo "$*" >> "$MC_STATE/calls"
case "$1 $2 $3" in
  "admin policy create") cp "$6" "$MC_STATE/policy-$5.json" ;;
  "admin policy attach")
    if [ -n "${MC_BROKEN:-}" ]; then
      echo "mc: <ERROR> Unable to attach: Access Denied." >&2
      exit 1
    fi
    mark="$MC_STATE/attached-$5-$7"
    if [ -e "$mark" ]; then
      echo "mc: <ERROR> The specified policy change is already in effect." >&2
      exit 1
    fi
    touch "$mark" ;;
esac
"""


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def createbucket_script() -> str:
    (script,) = compose()["services"]["createbucket"]["command"]
    return str(script).replace("$$", "$")  # what Compose hands the container's shell


@pytest.fixture
def mc(tmp_path: Path) -> Path:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "mc").write_text(FAKE_MC)
    (bin_dir / "mc").chmod(0o755)
    return state


def run_createbucket(state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": f"{state.parent / 'bin'}:/usr/bin:/bin",
        "MC_STATE": str(state),
        "TMPDIR": str(state.parent),
        **ENV,
        **env,
    }
    return subprocess.run(
        ["/bin/sh", "-c", createbucket_script()],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def calls(state: Path) -> list[str]:
    path = state / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_createbucket_makes_a_user_limited_to_the_bucket(mc: Path) -> None:
    done = run_createbucket(mc)
    assert done.returncode == 0, done.stderr
    made = calls(mc)
    root, password = ENV["MINIO_ROOT_USER"], ENV["MINIO_ROOT_PASSWORD"]
    assert made[0] == f"alias set root http://minio:9000 {root} {password}"
    assert f"mb --ignore-existing root/{BUCKET}" in made
    assert f"anonymous set none root/{BUCKET}" in made
    assert f"admin user add root {ENV['S3_ACCESS_KEY']} {ENV['S3_SECRET_KEY']}" in made
    assert f"admin policy attach root flick-bucket --user {ENV['S3_ACCESS_KEY']}" in made
    policy = json.loads((mc / "policy-flick-bucket.json").read_text())
    resources = {r for st in policy["Statement"] for r in st["Resource"]}
    assert resources == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert all(st["Effect"] == "Allow" for st in policy["Statement"])
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions
    assert not any("*" in a or a.startswith("admin:") for a in actions)
    assert not {"s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketPolicy"} & actions
    # Run again (every `docker compose up`): the attached policy is no failure.
    again = run_createbucket(mc)
    assert again.returncode == 0, again.stderr


def test_createbucket_refuses_the_root_user_as_flicks_key(mc: Path) -> None:
    done = run_createbucket(mc, S3_ACCESS_KEY=ENV["MINIO_ROOT_USER"])
    assert done.returncode != 0
    assert "not MinIO's root user" in done.stderr
    assert calls(mc) == []


def test_createbucket_fails_when_the_policy_cannot_be_attached(mc: Path) -> None:
    done = run_createbucket(mc, MC_BROKEN="1")
    assert done.returncode != 0
    assert "Access Denied" in done.stderr


def test_flick_never_gets_minios_root_credentials() -> None:
    services = compose()["services"]
    assert services["minio"]["env_file"] == ".env.minio"
    assert services["createbucket"]["env_file"] == ".env.minio"
    minio_text = yaml.safe_dump(services["minio"])
    assert "S3_ACCESS_KEY" not in minio_text and "S3_SECRET_KEY" not in minio_text
    flick = services["flick"]
    assert flick["env_file"] == ".env"
    for name in ("flick", "migrate"):
        text = yaml.safe_dump(services[name])
        assert "MINIO_ROOT" not in text and ".env.minio" not in text, name
    example = (ROOT / ".env.example").read_text()
    assert "MINIO_ROOT_USER=" not in example and "MINIO_ROOT_PASSWORD=" not in example
    assert services["flick"]["depends_on"]["createbucket"]["condition"] == (
        "service_completed_successfully"
    )


def test_minio_root_credentials_stay_out_of_git_and_the_image() -> None:
    git = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env.*" in git and "!.env.example" in git
    docker = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env.*" in docker


@pytest.fixture
def unit() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "deploy" / "flick.service")
    return parser["Service"]


def test_systemd_unit_keeps_its_sandbox(unit: configparser.SectionProxy) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",  # weed's unix sockets in /tmp are the service's alone
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        # Files private whatever Flick forgets: the data directory 0700, new files 0600.
        "StateDirectoryMode": "0700",
        "UMask": "0077",
    }
    assert {key: unit.get(key) for key in expected} == expected
    assert unit["User"] not in ("", "root", "0")
    assert unit["ReadWritePaths"].split() == ["/var/lib/flick"]


def test_docs_say_what_each_component_can_reach() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    assert "## What each component can reach" in doc
    for words in ("-disableHttp", "jwt.signing", "jwt.filer_signing", "https.client", ".env.minio"):
        assert words in doc, words
