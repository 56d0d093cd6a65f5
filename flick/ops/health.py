"""The operator's HTTP endpoint: `/healthz` (liveness of what Flick depends on) and `/metrics`.

Off unless HEALTH_ADDRESS is set: the bot itself needs no open port. Use it as

    async with HealthServer(settings.health_address, checks, METRICS) as health:
        ...

A check is an async callable that returns when its service works and raises when it does not.
`notes` are shown beside the checks' results but never fail them: `{"gateway": "standby"}` lets
an operator (and an orchestrator's probe) tell a waiting standby from the active gateway, and a
standby that answers 200 is not restarted for standing by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self

from aiohttp import web
from loguru import logger

from flick.errors import ConfigError, ServiceError
from flick.ops.logging import redact
from flick.ops.metrics import CONTENT_TYPE, Metrics

Check = Callable[[], Awaitable[None]]

#: Longest error text shown per failing check: a hint for the operator, not a traceback.
MAX_ERROR_CHARS = 200

_ADDRESS_HINT = "host:port, e.g. 127.0.0.1:8080 (0.0.0.0:8080 inside a container)"


def parse_address(address: str) -> tuple[str | None, int]:
    """Split "host:port" ("[::1]:8080" for IPv6; ":8080" for every interface)."""
    host, sep, port_text = address.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError([("HEALTH_ADDRESS", f"{address!r} is not host:port", _ADDRESS_HINT)])
    host = host.strip("[]")
    return (host or None), int(port_text)


class HealthServer:
    """A small aiohttp server for health checks and metrics; does nothing when address is None."""

    def __init__(
        self,
        address: str | None,
        checks: Mapping[str, Check],
        metrics: Metrics,
        *,
        check_timeout: float = 5.0,
        notes: Mapping[str, str] | None = None,
    ) -> None:
        self._address = address
        self._bind = parse_address(address) if address is not None else None
        self._checks = dict(checks)
        self._metrics = metrics
        self._timeout = check_timeout
        self._notes = dict(notes or {})
        if clash := self._notes.keys() & self._checks.keys():
            raise ValueError(f"both a check and a note: {sorted(clash)}")
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with port 0), None while not serving."""
        if self._runner is None or not self._runner.addresses:
            return None
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        if self._bind is None or self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._render_metrics)
        # No access log: a scraper every 15 s would drown the lines that matter.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = self._bind
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc)
            raise ServiceError(
                f"cannot serve health and metrics on {self._address}: {reason}", "HEALTH_ADDRESS"
            ) from exc
        self._runner = runner
        logger.info("health and metrics on http://{}:{}/healthz", host or "*", self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run_checks(self) -> dict[str, str]:
        """Every check at once, each bounded by the timeout: name → "ok" or a short error."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_one(n) for n in names))
        return dict(zip(names, results, strict=True))

    async def _run_one(self, name: str) -> str:
        try:
            await asyncio.wait_for(self._checks[name](), self._timeout)
        except TimeoutError:
            result = f"timed out after {self._timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure is the answer, not a crash
            detail = redact(str(exc)).strip().splitlines()
            result = type(exc).__name__ + (f": {detail[0]}" if detail else "")
            result = result[:MAX_ERROR_CHARS]
        else:
            return "ok"
        logger.warning("health check {} failed: {}", name, result)
        return result

    async def _healthz(self, request: web.Request) -> web.Response:
        results = await self.run_checks()
        healthy = all(value == "ok" for value in results.values())
        return web.json_response({**results, **self._notes}, status=200 if healthy else 503)

    async def _render_metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render())
        # Set raw: aiohttp's content_type= refuses the version parameter Prometheus expects.
        response.headers["Content-Type"] = CONTENT_TYPE
        return response
