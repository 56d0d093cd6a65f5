"""The AI providers' OpenAPI specs, checking HTTP traffic against them, and the fakes' base class.

The fakes (`fake_openai`, `fake_replicate`) are `SpecFake`s: they validate every request they
receive, and every reply they build, so a fake can never drift into accepting what the real service
rejects.
Validation is plain JSON Schema (2020-12, what OpenAPI 3.1 uses) on the spec's own schemas, resolved
in place with `referencing`; the 3 MB OpenAI spec is parsed once per process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self
from urllib.parse import urlsplit

import yaml
from aiohttp import BodyPartReader, web
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_FILES = {"openai": "openai-openapi.yaml", "replicate": "replicate-openapi.json"}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_LOAD_LOCK = threading.Lock()


def specs_dir() -> Path:
    """The `shared/specs` directory: $FLICK_SPECS_DIR, else found walking up from this checkout.

    CI lays `shared/` beside the checkout, so `../shared/specs` is found as well as `shared/specs`.
    """
    env = os.environ.get("FLICK_SPECS_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"FLICK_SPECS_DIR={env} is not a directory")
        return path
    starts = (Path(__file__).resolve().parent, Path.cwd().resolve())
    for start in starts:
        for parent in (start, *start.parents):
            candidate = parent / "shared" / "specs"
            if (candidate / SPEC_FILES["openai"]).is_file():
                return candidate
    raise FileNotFoundError(
        "cannot find shared/specs (the providers' OpenAPI specs); set FLICK_SPECS_DIR"
    )


def load_spec(name: str) -> ApiSpec:
    """The parsed spec `name` ("openai" or "replicate"), loaded once per process."""
    with _LOAD_LOCK:  # fakes load it from worker threads; parse the big YAML only once
        return _load_spec(name)


@functools.cache
def _load_spec(name: str) -> ApiSpec:
    path = specs_dir() / SPEC_FILES[name]
    with path.open("rb") as fh:
        if path.suffix == ".json":
            document = json.load(fh)
        else:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~1 s, not ~15 s
            document = yaml.load(fh, Loader=loader)  # a safe loader
    return ApiSpec(name, _to_2020(document))


def _to_2020(node: Any) -> Any:
    """Rewrite OpenAPI 3.0 leftovers for JSON Schema 2020-12: `nullable: true` allows null.

    Both specs say 3.1 yet still use `nullable`, which 2020-12 ignores; left alone, a `null` the
    real service accepts would be reported as a violation. Keys become strings (YAML: `200:` int).
    """
    if isinstance(node, list):
        return [_to_2020(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {str(key): _to_2020(value) for key, value in node.items()}
    flag = out.get("nullable")
    if isinstance(flag, bool):
        del out["nullable"]
        if flag:
            kind = out.get("type")
            if isinstance(kind, str | list):
                kinds = [kind] if isinstance(kind, str) else kind
                out["type"] = [*kinds, "null"] if "null" not in kinds else kinds
                if isinstance(out.get("enum"), list) and None not in out["enum"]:
                    out["enum"] = [*out["enum"], None]
            else:
                out = {"anyOf": [out, {"type": "null"}]}
    return out


def header_seconds(value: float) -> str:
    """A Retry-After value: integer seconds on the wire, fractions kept so tests can stay fast."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _short(text: str, limit: int = 240) -> str:
    # Instances can hold whole data URIs or files: keep violation messages readable.
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True, slots=True)
class FormPart:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def is_file(self) -> bool:
        return self.filename is not None


@dataclass(frozen=True, slots=True)
class Operation:
    method: str  # lower case, as in the spec
    template: str  # "/images/edits", relative to the server's base path
    pointer: str  # JSON pointer of the operation object in the spec

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.template}"


class ApiSpec:
    """One provider's OpenAPI document, with request and reply checks that return problems."""

    def __init__(self, name: str, document: dict[str, Any]) -> None:
        self.name = name
        self.document = document
        self.uri = f"urn:flick-spec:{name}"
        server = (document.get("servers") or [{}])[0].get("url", "")
        self.base_path = urlsplit(server).path.rstrip("/")
        resource = DRAFT202012.create_resource(document)
        self._registry: Registry[Any] = Registry().with_resource(self.uri, resource)
        self._validators: dict[str, Any] = {}
        routes = []
        for template in document.get("paths", {}):
            names = re.findall(r"\{([^}/]+)\}", template)
            parts = re.split(r"\{[^}/]+\}", template)
            regex = "([^/]+)".join(re.escape(part) for part in parts)
            routes.append((len(names), template, re.compile(regex), names))
        routes.sort(key=lambda route: route[0])  # literal paths win over templated ones
        self._routes = [(template, regex, names) for _, template, regex, names in routes]

    # -- lookups ------------------------------------------------------------------------------

    def at(self, pointer: str) -> Any:
        node: Any = self.document
        for raw in pointer.split("/")[1:]:
            key = raw.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        return node

    def resolve(self, node: Any) -> Any:
        for _ in range(32):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                break
            node = self.at(node["$ref"].split("#", 1)[1])
        return node

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]]:
        """The operation serving `method path`; LookupError says why there is none."""
        if not path.startswith(self.base_path + "/"):
            raise LookupError(f"{path} is outside the API's base path {self.base_path}")
        sub = path[len(self.base_path) :]
        for template, regex, names in self._routes:
            found = regex.fullmatch(sub)
            if found is None:
                continue
            item = self.document["paths"][template]
            if method.lower() not in item:
                allowed = sorted(m.upper() for m in item if m in _HTTP_METHODS)
                raise LookupError(f"{method} {template} is not in the spec (allowed: {allowed})")
            operation = Operation(
                method.lower(), template, _pointer("paths", template, method.lower())
            )
            return operation, dict(zip(names, found.groups(), strict=True))
        raise LookupError(f"no path in the {self.name} spec matches {sub}")

    def errors(self, pointer: str, instance: Any, root: str = "<body>") -> list[str]:
        """Schema errors of `instance` against the schema at `pointer` (none: it is valid)."""
        validator = self._validators.get(pointer)
        if validator is None:
            schema = {"$ref": f"{self.uri}#{pointer}"}
            validator = Draft202012Validator(schema, registry=self._registry)
            self._validators[pointer] = validator
        found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [
            f"{'/'.join(str(p) for p in e.absolute_path) or root}: {_short(e.message)}"
            for e in found
        ]

    def _kinds(self, schema: Any, depth: int = 0) -> set[str]:
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or depth > 16:
            return set()
        kind = schema.get("type")
        kinds = {kind} if isinstance(kind, str) else set(kind or ())
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, ()):
                kinds |= self._kinds(sub, depth + 1)
        return kinds

    def _is_binary(self, schema: Any, depth: int = 0) -> bool:
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or depth > 16:
            return False
        if schema.get("format") == "binary" or "contentMediaType" in schema:
            return True
        subs = [schema.get("items"), *schema.get("anyOf", ()), *schema.get("oneOf", ())]
        return any(self._is_binary(sub, depth + 1) for sub in subs if sub is not None)

    def coerce(self, schema: Any, text: str) -> Any:
        """A form field or parameter (always text on the wire) as the type its schema wants."""
        kinds = self._kinds(schema)
        if "integer" in kinds and re.fullmatch(r"-?\d+", text):
            return int(text)
        if "number" in kinds and _NUMBER.fullmatch(text):
            return float(text)
        if "boolean" in kinds and text in ("true", "false"):
            return text == "true"
        return text

    # -- requests -----------------------------------------------------------------------------

    def _parameters(self, operation: Operation) -> Iterator[tuple[dict[str, Any], str]]:
        path_item = _pointer("paths", operation.template)
        for owner in (path_item, operation.pointer):
            for index, param in enumerate(self.at(owner).get("parameters", ())):
                pointer = f"{owner}/parameters/{index}"
                if isinstance(param.get("$ref"), str):
                    pointer = param["$ref"].split("#", 1)[1]
                yield self.at(pointer), pointer

    def check_request(
        self,
        operation: Operation,
        path_params: Mapping[str, str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> list[str]:
        """Problems with the parameters and credentials of a request (not its body)."""
        problems = []
        for param, pointer in self._parameters(operation):
            source = {"path": path_params, "query": query, "header": headers}.get(param["in"])
            if source is None:
                continue  # cookies: neither provider uses them
            value = source.get(param["name"])
            if value is None:
                if param.get("required"):
                    problems.append(f"missing required {param['in']} parameter {param['name']}")
                continue
            instance = self.coerce(param.get("schema"), value)
            label = f"{param['in']} parameter {param['name']}"
            problems += self.errors(pointer + "/schema", instance, root=label)
        node = self.at(operation.pointer)
        security = node.get("security", self.document.get("security", []))
        needs_auth = bool(security) and {} not in security
        if needs_auth and not headers.get("Authorization", "").startswith("Bearer "):
            problems.append("missing credentials: the spec requires Authorization: Bearer <key>")
        return problems

    def check_body(
        self,
        operation: Operation,
        media_type: str | None,
        body: Any = None,
        parts: list[FormPart] | None = None,
    ) -> list[str]:
        """Problems with a request body: a parsed JSON `body` or multipart `parts`."""
        node = self.at(operation.pointer)
        request_body = self.resolve(node.get("requestBody"))
        if media_type is None:
            required = isinstance(request_body, dict) and request_body.get("required", False)
            return ["missing request body"] if required else []
        if not isinstance(request_body, dict):
            return [f"{operation.label} takes no request body, got {media_type}"]
        content = request_body.get("content", {})
        if media_type not in content:
            return [f"content type {media_type} not accepted (spec: {sorted(content)})"]
        pointer = operation.pointer + _pointer("requestBody", "content", media_type, "schema")
        if isinstance(node["requestBody"].get("$ref"), str):
            ref = node["requestBody"]["$ref"].split("#", 1)[1]
            pointer = ref + _pointer("content", media_type, "schema")
        problems: list[str] = []
        if parts is not None:
            body, problems = self.form_instance(pointer, parts)
        problems += self.unknown_fields(pointer, body)
        return problems + self.errors(pointer, body)

    def unknown_fields(self, pointer: str, body: Any) -> list[str]:
        # The real APIs reject parameters they do not know ("Unknown parameter"), even where the
        # spec leaves additionalProperties open.
        schema = self.resolve(self.at(pointer))
        if not (isinstance(body, dict) and isinstance(schema, dict)) or "properties" not in schema:
            return []
        if "additionalProperties" in schema:
            return []  # declared either way: the schema check reports it
        known = schema["properties"]
        return [f"{key}: unknown parameter" for key in body if key not in known]

    def form_instance(
        self, pointer: str, parts: list[FormPart]
    ) -> tuple[dict[str, Any], list[str]]:
        """Multipart parts as the object their schema describes: `x[]` or a repeated `x` is an
        array, files become placeholders (format: binary), text is coerced to the schema's type."""
        schema = self.resolve(self.at(pointer))
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        grouped: dict[str, list[FormPart]] = {}
        arrays: set[str] = set()
        for part in parts:
            name = part.name[:-2] if part.name.endswith("[]") else part.name
            if name != part.name or name in grouped:
                arrays.add(name)
            grouped.setdefault(name, []).append(part)
        instance: dict[str, Any] = {}
        problems: list[str] = []
        for name, group in grouped.items():
            prop = properties.get(name)
            binary = prop is not None and self._is_binary(prop)
            values: list[Any] = []
            for part in group:
                if part.is_file:
                    if prop is not None and not binary:
                        problems.append(f"{part.name}: sent as a file, the spec wants a value")
                    values.append(f"<file {part.filename} {len(part.data)} bytes>")
                else:
                    if binary:
                        problems.append(f"{part.name}: the spec wants a file upload")
                    text = part.data.decode("utf-8", "replace")
                    values.append(self.coerce(prop, text) if prop is not None else text)
            instance[name] = values if name in arrays else values[0]
        return instance, problems

    # -- replies ------------------------------------------------------------------------------

    def check_response(self, operation: Operation, status: int, body: Any) -> list[str]:
        """Problems with a JSON reply the fake is about to send (its drift, not the client's)."""
        responses = self.at(operation.pointer).get("responses", {})
        key = next((k for k in (str(status), f"{str(status)[0]}XX") if k in responses), None)
        if key is None:
            return [f"status {status} is not a documented reply of {operation.label}"]
        declared = responses[key]
        if isinstance(declared.get("$ref"), str):
            base = declared["$ref"].split("#", 1)[1]
        else:
            base = operation.pointer + _pointer("responses", key)
        if "application/json" not in self.resolve(declared).get("content", {}):
            return []
        return self.errors(base + _pointer("content", "application/json", "schema"), body)


# -- the base of the fakes --------------------------------------------------------------------

#: Faults every operation of every fake understands; fakes add their own per operation.
GENERIC_FAULTS = frozenset({"latency", "status", "malformed_json", "disconnect"})


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer to the next request of an operation: `fake.script(op, Fault...)`."""

    kind: str
    delay: float = 0.0  # seconds to wait before answering (every kind)
    http_status: int = 0
    retry_after: float | None = None
    code: str | None = None
    message: str | None = None
    n_bytes: int = 0
    chunked: bool = False

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Answer normally, `seconds` late."""
        return cls("latency", delay=seconds)

    @classmethod
    def status(
        cls,
        status: int,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> Fault:
        """An error reply in the provider's error shape, with a Retry-After header if given."""
        return cls(
            "status", http_status=status, retry_after=retry_after, code=code, message=message
        )

    @classmethod
    def malformed(cls, what: str = "json") -> Fault:
        """ "json": a 200 whose body is not JSON; "no_image" (OpenAI): a valid reply, no image."""
        if what not in ("json", "no_image"):
            raise ValueError("malformed() takes 'json' or 'no_image'")
        return cls("malformed_json" if what == "json" else "no_image")

    @classmethod
    def disconnect(cls) -> Fault:
        """Drop the connection without answering."""
        return cls("disconnect")

    @classmethod
    def moderation_blocked(cls) -> Fault:
        """OpenAI images: 400 `moderation_blocked`, as its safety system answers."""
        return cls("moderation_blocked")

    @classmethod
    def prediction_fails(cls, error: str = "CUDA error: out of memory") -> Fault:
        """Replicate, on predictions.create: the prediction runs, then ends `failed`."""
        return cls("prediction_fails", message=error)

    @classmethod
    def never_finishes(cls) -> Fault:
        """Replicate, on predictions.create: the prediction stays `processing` until canceled."""
        return cls("never_finishes")

    @classmethod
    def output_404(cls) -> Fault:
        """Replicate, on output: the file is gone (outputs are deleted after about an hour)."""
        return cls("output_404")

    @classmethod
    def output_html(cls) -> Fault:
        """Replicate, on output: 200 with an HTML page instead of a video."""
        return cls("output_html")

    @classmethod
    def output_large(cls, n_bytes: int, *, chunked: bool = False) -> Fault:
        """Replicate, on output: a video of `n_bytes` (chunked: without Content-Length)."""
        return cls("output_large", n_bytes=n_bytes, chunked=chunked)

    def after(self, seconds: float) -> Fault:
        """The same fault, answered `seconds` late."""
        return replace(self, delay=seconds)


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
    operation: Operation | None


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


class Route(NamedTuple):
    method: str
    path: str  # aiohttp route pattern
    op: str  # the name tests script faults on
    handler: Handler
    checked: bool = True  # False: not part of the API (e.g. Replicate's file delivery)


class SpecFake:
    """A local HTTP server speaking a provider's API, checking all traffic against its spec.

    Use it as an async context manager; `fake.origin` is `http://127.0.0.1:<port>`.
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
        self._scripts: dict[str, deque[Fault]] = {}
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
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.origin = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def script(self, op: str, *faults: Fault) -> None:
        """Queue faults: each answers one future request of `op`, in order."""
        ops = {route.op for route in self.routes()}
        if op not in ops:
            raise ValueError(f"unknown operation {op!r}; this fake serves {sorted(ops)}")
        allowed = GENERIC_FAULTS | self.fault_kinds.get(op, frozenset())
        for fault in faults:
            if fault.kind not in allowed:
                raise ValueError(
                    f"{fault.kind} does not apply to {op} (allowed: {sorted(allowed)})"
                )
        self._scripts.setdefault(op, deque()).extend(faults)

    def calls(self, op: str) -> list[RecordedRequest]:
        return [record for record in self.requests if record.op == op]

    def reply(self, call: Call, body: Any, status: int = 200) -> web.Response:
        """A JSON reply, itself checked against the spec: a fake must not drift either."""
        if call.operation is not None and 200 <= status < 300:
            for problem in self.spec.check_response(call.operation, status, body):
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
        problems, media, parts = await self._read_body(request, record)
        operation = None
        if route.checked and route.op != "unknown":
            try:
                operation, path_params = self.spec.match(request.method, request.path)
            except LookupError as exc:
                problems.append(str(exc))
            else:
                problems += self.spec.check_request(
                    operation, path_params, request.query, request.headers
                )
                if not problems:
                    problems += self.spec.check_body(operation, media, record.json, parts)
        if problems:
            for problem in problems:
                self._violate(record, problem)
            return self.error_response(400, "; ".join(problems), code="invalid_request")
        expected = f"Bearer {self.api_key}"
        if self.api_key is not None and request.headers.get("Authorization") != expected:
            return self.error_response(401, "Incorrect API key provided", code="invalid_api_key")
        queue = self._scripts.get(route.op)
        fault = record.fault = queue.popleft() if queue else None
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
        return await route.handler(Call(request, record, fault, operation))

    async def _read_body(
        self, request: web.Request, record: RecordedRequest
    ) -> tuple[list[str], str | None, list[FormPart] | None]:
        if not request.body_exists:
            return [], None, None
        media = request.content_type
        if media == "multipart/form-data":
            parts: list[FormPart] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    return ["nested multipart is not supported"], media, parts
                data = bytes(await part.read())
                item = FormPart(
                    part.name or "", part.filename, part.headers.get("Content-Type"), data
                )
                parts.append(item)
                if item.is_file:
                    record.files.setdefault(item.name, []).append(item)
                else:
                    record.form.setdefault(item.name, []).append(data.decode("utf-8", "replace"))
            return [], media, parts
        raw = await request.read()
        if media == "application/json":
            try:
                record.json = json.loads(raw)
            except ValueError as exc:
                return [f"body is not valid JSON: {exc}"], media, None
        return [], media, None

    async def _unknown(self, call: Call) -> web.StreamResponse:
        request = call.request
        try:
            operation, _ = self.spec.match(request.method, request.path)
        except LookupError as exc:
            self._violate(call.record, str(exc))
            return self.error_response(400, str(exc), code="invalid_request")
        # Valid per the spec, but this fake cannot answer it: fail loudly rather than guess.
        problem = f"{operation.label} is in the spec but not implemented by this fake"
        self._violate(call.record, problem)
        return self.error_response(501, problem)
