"""The health server on a real socket: checks, errors without secrets, metrics, taken ports."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from flick.errors import ConfigError, ServiceError
from flick.ops.health import HealthServer, parse_address
from flick.ops.metrics import Metrics
from flick.ops.standby_health import standby_health


async def ok() -> None:
    return None


async def refused() -> None:
    raise ConnectionRefusedError("connect to postgresql://flick:Hunter2-pw@db:5432/flick failed")


async def hangs() -> None:
    await asyncio.sleep(30)


async def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_healthy() -> None:
    checks = {"database": ok, "storage": ok, "telegram": ok}
    async with HealthServer("127.0.0.1:0", checks, Metrics()) as server:
        assert server.port
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/healthz"
            async with session.get(url) as response:
                assert response.status == 200
                assert await response.json() == {
                    "database": "ok",
                    "storage": "ok",
                    "telegram": "ok",
                }


async def test_failing_check_is_named_without_secrets() -> None:
    checks = {"database": refused, "storage": ok, "telegram": ok}
    async with HealthServer("127.0.0.1:0", checks, Metrics()) as server:
        status, content_type, body = await get(server, "/healthz")
    assert status == 503
    assert content_type.startswith("application/json")
    assert '"storage": "ok"' in body
    assert '"database": "ConnectionRefusedError: connect to postgresql://flick:***@db' in body
    assert "Hunter2-pw" not in body


async def test_slow_check_times_out() -> None:
    server = HealthServer("127.0.0.1:0", {"telegram": hangs}, Metrics(), check_timeout=0.05)
    async with server:
        status, _, body = await get(server, "/healthz")
    assert status == 503
    assert "timed out after 0.05 s" in body


async def test_metrics_endpoint() -> None:
    metrics = Metrics()
    metrics.updates.labels(kind="callback").inc(3)
    async with HealthServer("127.0.0.1:0", {}, metrics) as server:
        status, content_type, body = await get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'flick_updates_total{kind="callback"} 3.0' in body


async def test_notes_are_shown_and_never_fail_the_checks() -> None:
    notes = {"gateway": "active"}
    async with HealthServer("127.0.0.1:0", {"database": ok}, Metrics(), notes=notes) as server:
        status, _, body = await get(server, "/healthz")
    assert (status, body) == (200, '{"database": "ok", "gateway": "active"}')
    async with HealthServer("127.0.0.1:0", {"database": refused}, Metrics(), notes=notes) as server:
        status, _, body = await get(server, "/healthz")
    assert status == 503
    assert '"gateway": "active"' in body


def test_a_note_cannot_hide_a_check() -> None:
    with pytest.raises(ValueError, match="database"):
        HealthServer(None, {"database": ok}, Metrics(), notes={"database": "ok"})


async def test_a_standby_is_healthy_while_its_database_answers(database_url: str) -> None:
    async with standby_health("127.0.0.1:0", database_url, Metrics()) as server:
        status, _, body = await get(server, "/healthz")
    assert (status, body) == (200, '{"database": "ok", "gateway": "standby"}')


async def test_a_standby_without_its_database_is_unhealthy() -> None:
    # It could not take over: a probe should say so, and still see that it is the standby.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql://flick:Hunter2-pw@127.0.0.1:{port}/flick"
    async with standby_health("127.0.0.1:0", url, Metrics()) as server:
        status, _, body = await get(server, "/healthz")
    assert status == 503
    assert '"gateway": "standby"' in body
    assert '"database": "ConnectionRefusedError' in body
    assert "Hunter2-pw" not in body


async def test_port_taken_names_the_setting() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = HealthServer(f"127.0.0.1:{port}", {"database": ok}, Metrics())
        with pytest.raises(ServiceError, match="HEALTH_ADDRESS") as caught:
            await server.start()
    assert caught.value.setting == "HEALTH_ADDRESS"
    assert server.port is None


async def test_off_without_address() -> None:
    async with HealthServer(None, {"database": ok}, Metrics()) as server:
        assert server.port is None


async def test_stop_frees_the_port() -> None:
    server = HealthServer("127.0.0.1:0", {}, Metrics())
    async with server:
        port = server.port
    again = HealthServer(f"127.0.0.1:{port}", {}, Metrics())
    async with again:
        assert again.port == port


def test_addresses() -> None:
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address(":8080") == (None, 8080)
    for bad in ("8080", "localhost", "host:http", "host:70000"):
        with pytest.raises(ConfigError, match="HEALTH_ADDRESS"):
            parse_address(bad)
