"""The AI providers' OpenAPI specs, and the check of every request and reply the fakes see.

The fakes (`fake_openai`, `fake_replicate`, on `fake_http.SpecFake`) hand each request they
receive, and each reply they build, to `ApiSpec.check_request` / `check_response`, which run
openapi-core's request and response validators on the provider's official spec: path, method,
security, parameters, body. What openapi-core 0.23 cannot check on these specs is done by the
small shims in `spec_shims` (multipart fields, `nullable`, unknown parameters), each with its
reason. A spec is loaded once per process (the OpenAI one is 3 MB of YAML).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from jsonschema.exceptions import ValidationError, best_match
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import (
    OperationNotFound,
    PathError,
    PathNotFound,
    ServerNotFound,
)
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.validation.request.exceptions import (
    ParameterValidationError,
    SecurityValidationError,
)
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue

from flick.testing.spec_shims import (
    FORMAT_VALIDATORS,
    MEDIA_TYPE_DESERIALIZERS,
    FormPart,
    TypedFormDeserializersFactory,
    allow_nullable,
    unknown_fields,
)

__all__ = ["ApiSpec", "FormPart", "Operation", "SpecRequest", "load_spec", "specs_dir"]

SPEC_FILES = {"openai": "openai-openapi.yaml", "replicate": "replicate-openapi.json"}
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
    """The spec `name` ("openai" or "replicate"), loaded once per process."""
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
    return ApiSpec(name, allow_nullable(document))


def _short(text: str, limit: int = 240) -> str:
    # Instances can hold whole data URIs or files: keep violation messages readable.
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True, slots=True)
class Operation:
    method: str  # lower case, as in the spec
    template: str  # "/images/edits", relative to the server's base path

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.template}"


@dataclass(slots=True)
class SpecRequest:
    """A request as openapi-core reads it (its `Request` protocol), addressed to the real service.

    The fake listens on 127.0.0.1; `host_url` is the spec's own server, so a path outside the
    API's base path is refused the way the real host would refuse it.
    """

    host_url: str
    path: str
    method: str  # lower case
    body: bytes | None
    content_type: str  # with its parameters: multipart needs the boundary
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass(slots=True)
class _JsonReply:
    """A reply as openapi-core reads it (its `Response` protocol)."""

    status_code: int
    data: bytes
    headers: Mapping[str, str]
    content_type: str = "application/json"


class ApiSpec:
    """One provider's OpenAPI document and openapi-core's validators for it."""

    def __init__(self, name: str, document: dict[str, Any]) -> None:
        self.name = name
        server = urlsplit((document.get("servers") or [{}])[0].get("url", ""))
        self.origin = f"{server.scheme}://{server.netloc}"
        self.base_path = server.path.rstrip("/")
        config = Config(
            # The official OpenAI spec does not pass openapi-spec-validator (an object lists the
            # same `required` names twice); it is the provider's own data, so take it as it is.
            spec_validator_cls=None,
            extra_media_type_deserializers=MEDIA_TYPE_DESERIALIZERS,
            media_type_deserializers_factory=TypedFormDeserializersFactory(),
            extra_format_validators=FORMAT_VALIDATORS,
        )
        self.app = OpenAPI.from_dict(document, config=config)
        self._paths = APICallPathFinder(self.app.spec)  # the lookup openapi-core's validators do

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "",
    ) -> SpecRequest:
        """`method path` (as the fake received it) as a request to the real service."""
        parameters = RequestParameters(query=query or {}, header=headers or {})
        return SpecRequest(
            self.origin, path, method.lower(), body or None, content_type, parameters
        )

    def operation(self, request: SpecRequest) -> Operation:
        """The operation serving `request`; LookupError says why there is none."""
        try:
            found = self._paths.find(request.method, self._url(request))
        except PathError as exc:
            raise LookupError(self._path_problem(request, exc)) from exc
        return Operation(request.method, found.path_result.resolved)

    def check_request(self, request: SpecRequest) -> list[str]:
        """Everything wrong with `request` according to the spec (nothing: it is valid)."""
        problems = [
            problem
            for exc in self.app.iter_apicall_request_errors(request)
            for problem in self._describe(request, exc)
        ]
        return problems or self._extras(request)

    def check_response(self, request: SpecRequest, status: int, body: Any) -> list[str]:
        """Everything wrong with a JSON reply the fake is about to send (its drift)."""
        reply = _JsonReply(status, json.dumps(body).encode(), {})
        return [
            problem
            for exc in self.app.iter_apicall_response_errors(request, reply)
            for problem in self._describe(request, exc)
        ]

    # -- details ------------------------------------------------------------------------------

    def _url(self, request: SpecRequest) -> str:
        return request.host_url + request.path

    def _path_problem(self, request: SpecRequest, exc: PathError) -> str:
        sub = request.path.removeprefix(self.base_path)
        if isinstance(exc, ServerNotFound) or not request.path.startswith(self.base_path + "/"):
            return f"{request.path} is outside the API's base path {self.base_path}"
        if isinstance(exc, OperationNotFound):
            return f"{request.method.upper()} {sub} is not in the spec"
        if isinstance(exc, PathNotFound):
            return f"no path in the {self.name} spec matches {sub}"
        return str(exc)

    def _extras(self, request: SpecRequest) -> list[str]:
        """Checks the real APIs make that openapi-core leaves out (see `spec_shims`)."""
        operation = self._paths.find(request.method, self._url(request)).operation
        if request.body and "requestBody" not in operation:
            return [f"{request.method.upper()} takes no request body"]
        return unknown_fields(operation, request.content_type, request.body)

    def _describe(self, request: SpecRequest, exc: Exception) -> list[str]:
        """One line per problem, saying where it is: `quality: 'ultra' is not one of [...]`."""
        if isinstance(exc, PathError):
            return [self._path_problem(request, exc)]
        if isinstance(exc, SecurityValidationError):
            return [f"missing credentials: {exc.__cause__ or exc}"]
        where = "<body>"
        if isinstance(exc, ParameterValidationError):
            where = f"{exc.location} parameter {exc.name}"
        cause = exc.__cause__
        if not isinstance(cause, InvalidSchemaValue):
            return [_short(str(exc))]
        found = [_closest(e) for e in cause.schema_errors if isinstance(e, ValidationError)]
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or where}: {_short(error.message)}"
            for error in found
        ]


def _closest(error: ValidationError) -> ValidationError:
    """The error worth reporting: best_match's pick, and inside an anyOf that `allow_nullable`
    made of `nullable`, what is wrong with the value as the non-null branch ("not an integer")."""
    best = best_match([error])
    if best.validator != "anyOf":
        return best
    typed = [e for e in best.context or () if e.schema != {"type": "null"}]
    if not typed or len(typed) == len(best.context or ()):
        return best
    return _closest(best_match(typed))
