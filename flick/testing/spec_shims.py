"""What openapi-core 0.23 cannot check on the providers' specs by itself, and the shims for it.

`specs.ApiSpec` runs openapi-core's validators; these pieces plug into its configuration:

- **multipart/form-data fields.** openapi-core's own multipart loader (`data_form_loads`) keeps
  only `name -> bytes`: it forgets which parts are files, and it does not know the `image[]`
  name the OpenAI SDK gives a list of files. `form_fields` parses the body keeping both, and
  hands files over as `Upload` placeholders (a `str`: OpenAPI 3.1's `type: string` refuses
  `bytes`), so that `format: binary` can require a file where the spec wants one.
- **typed text fields.** openapi-core decodes a multipart text part as a string and validates it
  as it is, so `n=1` fails `type: integer`. `TypedFormDeserializersFactory` casts each text
  field with openapi-core's own schema caster first, as the real API parses it.
- **`nullable`.** Both specs say OpenAPI 3.1 yet still use 3.0's `nullable: true`, which 3.1
  ignores: a `null` the real service accepts (and sends) would be a violation. `allow_nullable`
  rewrites it as `anyOf: [schema, {type: null}]` (an anyOf, not `type: [t, "null"]`, because
  openapi-core only casts a form field to a single type).
- **unknown parameters.** The real APIs refuse a body parameter they do not know, even where the
  spec leaves `additionalProperties` open; openapi-core's `additional_properties_default_policy`
  would also close every nested free-form object (Replicate's `input`), so `unknown_fields`
  checks the body's top-level names only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema_path import SchemaPath
from openapi_core.casting.schemas import oas31_schema_casters_factory
from openapi_core.casting.schemas.exceptions import CastError
from openapi_core.deserializing.media_types.datatypes import MediaTypeDeserializersDict
from openapi_core.deserializing.media_types.deserializers import MediaTypeDeserializer
from openapi_core.deserializing.media_types.factories import MediaTypeDeserializersFactory
from openapi_core.validation.schemas.datatypes import FormatValidatorsDict
from openapi_core.validation.schemas.validators import SchemaValidator
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData


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


@functools.lru_cache(maxsize=4)
def parse_form(body: bytes, boundary: str) -> tuple[FormPart, ...]:
    """The parts of a multipart/form-data body, in order, files told from text by a filename.

    werkzeug's decoder (openapi-core's own dependency): the stdlib email parser behind
    openapi-core's `data_form_loads` took 6 times as long on a 3.7 MB form of two photos.
    Cached: the fake, the deserializer and `unknown_fields` each read the same body.
    """
    if not boundary:
        raise ValueError("multipart/form-data without a boundary")
    decoder = MultipartDecoder(boundary.encode("latin-1"))
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: list[FormPart] = []
    head: Field | File | None = None
    data = bytearray()
    while not isinstance(event := decoder.next_event(), Epilogue | NeedData):
        if isinstance(event, Field | File):
            head, data = event, bytearray()
        elif isinstance(event, Data) and head is not None:
            data += event.data
            if not event.more_data:
                filename = head.filename if isinstance(head, File) else None
                content_type = head.headers.get("Content-Type")
                parts.append(FormPart(head.name, filename, content_type, bytes(data)))
    if isinstance(event, NeedData):
        raise ValueError("the body ends before its closing boundary")
    return tuple(parts)


class Upload(str):
    """A file part as the schema check sees it: a placeholder naming the file."""

    __slots__ = ()


def form_fields(value: bytes, **parameters: str) -> dict[str, Any]:
    """openapi-core's multipart/form-data deserializer: name -> text, `Upload` or a list of them.

    `x[]`, or `x` sent more than once, is the array `x`.
    """
    found: dict[str, list[str]] = {}
    arrays: set[str] = set()
    for part in parse_form(value, parameters.get("boundary", "")):
        name = part.name.removesuffix("[]")
        if name != part.name or name in found:
            arrays.add(name)
        if part.is_file:
            text: str = Upload(f"<file {part.filename} {len(part.data)} bytes>")
        else:
            text = part.data.decode("utf-8", "replace")
        found.setdefault(name, []).append(text)
    return {name: texts if name in arrays else texts[0] for name, texts in found.items()}


def _is_upload(value: object) -> bool:
    # `format: binary` in a form: a file part, never a text field holding some words.
    return not isinstance(value, str) or isinstance(value, Upload)


MEDIA_TYPE_DESERIALIZERS: MediaTypeDeserializersDict = {"multipart/form-data": form_fields}
FORMAT_VALIDATORS: FormatValidatorsDict = {"binary": _is_upload}


class _TypedFormDeserializer(MediaTypeDeserializer):
    def decode_property_content_type(
        self,
        prop_name: str,
        prop_schema: SchemaPath,
        location: Mapping[str, Any],
        prop_encoding: SchemaPath | None = None,
    ) -> Any:
        value = super().decode_property_content_type(
            prop_name, prop_schema, location, prop_encoding
        )
        if self.schema_caster is None or not self.mimetype.startswith("multipart/"):
            return value
        try:
            return self.schema_caster.evolve(prop_schema).cast(value)
        except CastError:
            return value  # "lots" for an integer: left as text, for the schema check to refuse


class TypedFormDeserializersFactory(MediaTypeDeserializersFactory):
    """openapi-core's media-type deserializers, whose multipart text fields are cast."""

    def __init__(self) -> None:
        made = MediaTypeDeserializersFactory.from_schema_casters_factory(
            oas31_schema_casters_factory
        )
        super().__init__(made.style_deserializers_factory, made.media_type_deserializers)

    def create(
        self,
        spec: SchemaPath,
        mimetype: str,
        schema: SchemaPath | None = None,
        schema_validator: SchemaValidator | None = None,
        parameters: Mapping[str, str] | None = None,
        encoding: SchemaPath | None = None,
        extra_media_type_deserializers: MediaTypeDeserializersDict | None = None,
    ) -> MediaTypeDeserializer:
        made = super().create(
            spec,
            mimetype,
            schema,
            schema_validator,
            parameters,
            encoding,
            extra_media_type_deserializers,
        )
        return _TypedFormDeserializer(
            made.spec,
            made.style_deserializers_factory,
            made.media_types_deserializer,
            made.mimetype,
            schema=made.schema,
            schema_validator=made.schema_validator,
            schema_caster=made.schema_caster,
            encoding=made.encoding,
            **made.parameters,
        )


def allow_nullable(node: Any) -> Any:
    """The document with OpenAPI 3.0's `nullable: true` as 3.1 says it; keys as strings (YAML
    reads `200:` as an int)."""
    if isinstance(node, list):
        return [allow_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {str(key): allow_nullable(value) for key, value in node.items()}
    flag = out.pop("nullable", None)
    if flag is True:
        nullable: dict[str, Any] = {"anyOf": [out, {"type": "null"}]}
        if "default" in out:  # openapi-core fills a missing form field from the top level
            nullable["default"] = out["default"]
        return nullable
    if flag is not None and not isinstance(flag, bool):
        out["nullable"] = flag  # a property named "nullable", not the keyword
    return out


def unknown_fields(operation: SchemaPath, content_type: str, body: bytes | None) -> list[str]:
    """Top-level body parameters the operation's schema does not name (and does not allow)."""
    mimetype = content_type.partition(";")[0]
    content = operation / "requestBody" / "content"
    if not body or mimetype.strip() not in content:
        return []
    schema = content / mimetype.strip() / "schema"
    if "properties" not in schema or "additionalProperties" in schema:
        return []  # declared either way: openapi-core's schema check reports it
    if mimetype.strip() == "multipart/form-data":
        names = list(form_fields(body, boundary=form_boundary(content_type)))
    else:
        decoded = json.loads(body)
        names = list(decoded) if isinstance(decoded, dict) else []
    known = set((schema / "properties").keys())
    return [f"{name}: unknown parameter" for name in names if name not in known]


def form_boundary(content_type: str) -> str:
    """The boundary parameter of a `multipart/form-data; boundary=...` header ("" if none)."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip('"')
    return ""
