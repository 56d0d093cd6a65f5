"""The fake providers' HTTP machinery: a local aiohttp server that checks all its traffic.

A `SpecFake` serves a provider's `Route`s, checks every request (and every reply it builds)
against the provider's OpenAPI spec (`specs`), records each request, and answers with the
scripted `Fault`s first, so tests can make a provider slow, failing or malformed on demand.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Self

from aiohttp import web

from flick.testing.faults import GENERIC_FAULTS, Fault, assert_all_used
from flick.testing.spec_shims import FormPart, form_boundary, parse_form
from flick.testing.specs import SpecRequest, load_spec


def header_seconds(value: float) -> str:
    """A Retry-After value: integer seconds on the wire, fractions kept so tests can stay fast."""
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True, slots=True)
class Violation:
    """A request (or one of the fake's own replies) the spec does not allow."""

    op: str
    method: str
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.op}: {self.method} {self.path}: {self.problem}"


@dataclass
class RecordedRequest:
    op: str
    method: str
    path: str
    headers: dict[str, str]  # Authorization redacted
    query: dict[str, str]
    started: float  # time.monotonic()
    finished: float | None = None
    status: int = 0
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)  # text fields, by wire name
    files: dict[str, list[FormPart]] = field(default_factory=dict)  # file parts, by wire name
    fault: Fault | None = None


@dataclass
class Call:
    """What a fake's handler gets: the request, its record, and the scripted fault, if any."""

    request: web.Request
    record: RecordedRequest
    fault: Fault | None
    checked: SpecRequest | None  # the request as the spec saw it; None: not an API request


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


class Route(NamedTuple):
    method: str
    path: str  # aiohttp route pattern
    op: str  # the name tests script faults on
    handler: Handler
    checked: bool = True  # False: not part of the API (e.g. Replicate's file delivery)


class SpecFake:
    """A local HTTP server speaking a provider's API, checking all traffic against its spec.

    Use it as an async context manager; `fake.origin` is `http://127.0.0.1:<port>`. Set `bind`
    before entering to serve other hosts too (flick.testing.lab: the test's own address on the
    multi-host test network).
    """

    spec_name: ClassVar[str]
    #: Provider-specific fault kinds an operation accepts, besides GENERIC_FAULTS.
    fault_kinds: ClassVar[Mapping[str, frozenset[str]]] = {}

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key  # None: any bearer token is accepted
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.in_flight = 0  # requests being answered right now
        self.max_in_flight = 0  # the most ever answered at once
        self.max_in_flight_by_op: dict[str, int] = {}
        self._in_flight_by_op: dict[str, int] = {}
        self.origin = ""
        self.bind = "127.0.0.1"
        self._scripts: dict[str, deque[Fault]] = {}
        self._every: dict[str, Fault] = {}  # op -> the fault answering all its requests
        self._every_used: set[str] = set()
        self._runner: web.AppRunner | None = None

    # Subclasses say what they serve and how their provider words an error.
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def error_response(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> web.Response:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self.spec = await asyncio.to_thread(load_spec, self.spec_name)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for route in self.routes():
            app.router.add_route(route.method, route.path, self._wrap(route))
        app.router.add_route(
            "*", "/{tail:.*}", self._wrap(Route("*", "", "unknown", self._unknown))
        )
        # handler_cancellation: a client that gives up ends its request here too, as it would in
        # production, so in_flight counts what the client is really waiting on.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.bind, 0).start()
        port = self._runner.addresses[0][1]
        self.origin = f"http://{self.bind}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def script(self, op: str, *faults: Fault) -> None:
        """Queue faults: each answers one future request of `op`, in order."""
        self._check_faults(op, faults)
        self._scripts.setdefault(op, deque()).extend(faults)

    def script_every(self, op: str, fault: Fault | None) -> None:
        """`fault` answers every request of `op` once the queued ones are used (the provider is
        down, or slow, until `script_every(op, None)`)."""
        if fault is None:
            self._every.pop(op, None)
            return
        self._check_faults(op, (fault,))
        self._every[op] = fault

    def _check_faults(self, op: str, faults: Iterable[Fault]) -> None:
        ops = {route.op for route in self.routes()}
        if op not in ops:
            raise ValueError(f"unknown operation {op!r}; this fake serves {sorted(ops)}")
        allowed = GENERIC_FAULTS | self.fault_kinds.get(op, frozenset())
        for fault in faults:
            if fault.kind not in allowed:
                raise ValueError(
                    f"{fault.kind} does not apply to {op} (allowed: {sorted(allowed)})"
                )

    def unused_faults(self) -> dict[str, list[Fault]]:
        """Scripted faults no request has triggered yet, by operation (a `script_every` fault
        counts as used once it has answered one request)."""
        unused = {op: list(queue) for op, queue in self._scripts.items() if queue}
        for op, fault in self._every.items():
            if op not in self._every_used:
                unused.setdefault(op, []).append(fault)
        return unused

    def assert_faults_used(self) -> None:
        """Fail if a scripted fault was never triggered; fixtures call it when a test ends."""
        assert_all_used(type(self).__name__, self.unused_faults())

    def calls(self, op: str) -> list[RecordedRequest]:
        return [record for record in self.requests if record.op == op]

    def reply(self, call: Call, body: Any, status: int = 200) -> web.Response:
        """A JSON reply, itself checked against the spec: a fake must not drift either."""
        if call.checked is not None and 200 <= status < 300:
            for problem in self.spec.check_response(call.checked, status, body):
                self._violate(call.record, f"fake's reply {status}: {problem}")
        return web.json_response(body, status=status)

    def _violate(self, record: RecordedRequest, problem: str) -> None:
        self.violations.append(Violation(record.op, record.method, record.path, problem))

    def _wrap(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            headers = {
                k: ("<redacted>" if k.lower() == "authorization" else v)
                for k, v in request.headers.items()
            }
            record = RecordedRequest(
                route.op,
                request.method,
                request.path,
                headers,
                dict(request.query),
                started=time.monotonic(),
            )
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            now = self._in_flight_by_op[route.op] = self._in_flight_by_op.get(route.op, 0) + 1
            self.max_in_flight_by_op[route.op] = max(self.max_in_flight_by_op.get(route.op, 0), now)
            try:
                response = await self._answer(route, request, record)
                record.status = response.status
                return response
            finally:
                self.in_flight -= 1
                self._in_flight_by_op[route.op] -= 1
                record.finished = time.monotonic()

        return handle

    async def _answer(
        self, route: Route, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
        raw = await request.read()
        problems = self._record_body(request, raw, record)
        checked = None
        if route.checked and route.op != "unknown":
            checked = self.spec.request(
                request.method,
                request.path,
                query=request.query,
                headers=request.headers,
                body=raw,
                content_type=request.headers.get("Content-Type", ""),
            )
            if not problems:
                problems = self.spec.check_request(checked)
        if problems:
            for problem in problems:
                self._violate(record, problem)
            return self.error_response(400, "; ".join(problems), code="invalid_request")
        expected = f"Bearer {self.api_key}"
        if self.api_key is not None and request.headers.get("Authorization") != expected:
            return self.error_response(401, "Incorrect API key provided", code="invalid_api_key")
        queue = self._scripts.get(route.op)
        fault: Fault | None
        if queue:
            fault = queue.popleft()
        else:
            fault = self._every.get(route.op)
            if fault is not None:
                self._every_used.add(route.op)
        record.fault = fault
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.kind == "status":
                message = fault.message or f"scripted {fault.http_status}"
                return self.error_response(
                    fault.http_status, message, code=fault.code, retry_after=fault.retry_after
                )
            if fault.kind == "malformed_json":
                return web.Response(text='{"created": 17', content_type="application/json")
            if fault.kind == "disconnect":
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=499)
        return await route.handler(Call(request, record, fault, checked))

    def _record_body(self, request: web.Request, raw: bytes, record: RecordedRequest) -> list[str]:
        """Keep what the body says for the test to read; problems if it cannot be read at all."""
        if not raw:
            return []
        if request.content_type == "multipart/form-data":
            try:
                boundary = form_boundary(request.headers.get("Content-Type", ""))
                parts = parse_form(raw, boundary)
            except ValueError as exc:
                return [f"body is not a multipart form: {exc}"]
            for part in parts:
                if part.is_file:
                    record.files.setdefault(part.name, []).append(part)
                else:
                    text = part.data.decode("utf-8", "replace")
                    record.form.setdefault(part.name, []).append(text)
        elif request.content_type == "application/json":
            try:
                record.json = json.loads(raw)
            except ValueError as exc:
                return [f"body is not valid JSON: {exc}"]
        return []

    async def _unknown(self, call: Call) -> web.StreamResponse:
        request = call.request
        checked = self.spec.request(request.method, request.path)
        try:
            operation = self.spec.operation(checked)
        except LookupError as exc:
            self._violate(call.record, str(exc))
            return self.error_response(400, str(exc), code="invalid_request")
        # Valid per the spec, but this fake cannot answer it: fail loudly rather than guess.
        problem = f"{operation.label} is in the spec but not implemented by this fake"
        self._violate(call.record, problem)
        return self.error_response(501, problem)
