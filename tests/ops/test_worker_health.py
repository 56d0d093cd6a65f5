"""A worker's /healthz on a real socket, PostgreSQL and S3: healthy while it can take
generations, unhealthy (and saying why) while the gateway's configuration differs from its own."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import aiohttp

from flick.models import db, migrations
from flick.settings import Settings
from flick.storage import S3Storage
from flick.testing.engine import truncate
from flick.worker import worker


def unused_port() -> int:
    # The worker does not tell its health port, so it gets one that was free a moment ago.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status, json.loads(await response.text())


async def test_a_worker_reports_its_health_and_a_configuration_mismatch(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> None:
    async with db.connection_pool(database_url, 1, 2):
        await migrations.apply()
        # The worker's database is this xdist worker's, shared with the tests that ran before:
        # one of them may have left its gateway's configuration in force (a flaky 503 here).
        await truncate()
    port = unused_port()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        image_provider="local",
        video_provider="local",
        health_address=f"127.0.0.1:{port}",
    )
    async with worker(settings, database_url=database_url, storage=storage) as engine:
        await engine.ready.wait()
        status, body = await healthz(port)
        assert (status, body) == (
            200,
            {
                "database": "ok",
                "storage": "ok",
                "queue": "ok",
                "configuration": "ok",
                "worker": "ok",
            },
        )
        # A gateway with other styles or models becomes the active one: this worker takes no
        # job until it runs with the same, and its probe says so.
        pool = db.pool()
        previous = await pool.fetchval("SELECT version FROM work_config")
        await pool.execute(
            "INSERT INTO work_config (version) VALUES ('0ther0ther00') ON CONFLICT (singleton) "
            "DO UPDATE SET version = EXCLUDED.version"
        )
        try:
            status, body = await healthz(port)
        finally:
            if previous is None:
                await pool.execute("DELETE FROM work_config")
            else:
                await pool.execute("UPDATE work_config SET version = $1", previous)
    assert status == 503
    assert body["configuration"].startswith("VersionMismatch: this worker has ")
    assert body["configuration"].endswith(", the gateway 0ther0ther00")
    assert body["worker"] == "ok"
    assert body["database"] == body["storage"] == body["queue"] == "ok"
