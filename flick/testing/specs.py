"""The AI providers' OpenAPI specs: loading them, and checking HTTP requests and replies.

The fakes (`fake_openai`, `fake_replicate`, on `fake_http.SpecFake`) check every request they
receive, and every reply they build, here, so a fake can never drift into accepting what the real
service rejects.
Validation is plain JSON Schema (2020-12, what OpenAPI 3.1 uses) on the spec's own schemas, resolved
in place with `referencing`; the 3 MB OpenAI spec is parsed once per process.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
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
