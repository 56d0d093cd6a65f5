"""The video models' input schemas (flick/model_inputs/<owner>__<name>.json) and the check of a
style's inputs against them when the styles file loads.

Why at load: a style whose inputs its model would refuse ("duration must be 5 or 10") would
otherwise be found by the first paying user, as a refund. The same schemas drive the test kit's
fake Replicate, so what the fake accepts and what Flick starts with are one definition.
A model without a schema here is not refused: the operator may name any model; only the ones
we have a schema for can be checked.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

from flick.routes import ModelSpec, Route, image_inputs, model_inputs

SCHEMAS_DIR = Path(__file__).with_name("model_inputs")
#: Stands for an uploaded photo: the SDK sends each file as a URL (or a data URI).
_PHOTO_URL = "https://files.invalid/photo.jpg"


@functools.cache
def _read_schemas(folder: Path) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*__*.json")):
        owner, _, name = path.stem.partition("__")
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)  # a broken schema fails loudly
        schemas[f"{owner}/{name}"] = schema
    return schemas


def input_schemas(folder: Path = SCHEMAS_DIR) -> dict[str, dict[str, Any]]:
    """Each model's input schema by `owner/name`, from a folder of `<owner>__<name>.json`."""
    return dict(_read_schemas(folder))


def input_errors(schema: dict[str, Any], given: Any) -> list[str]:
    """What is wrong with one prediction's `input`, in the schema's words (empty: nothing)."""
    errors = jsonschema.Draft202012Validator(schema).iter_errors(given)
    return [
        f"input{e.json_path[1:]}: {e.message[:200]}"
        for e in sorted(errors, key=lambda e: e.json_path)
    ]


def route_problems(route: Route, prompt: str, folder: Path = SCHEMAS_DIR) -> list[str]:
    """Each input the route would send that its model's schema refuses, per model and tier."""
    schemas = input_schemas(folder)
    photos = 2 if route.kind == "direct" else 1
    problems: list[str] = []
    specs: list[tuple[str, ModelSpec]] = [("model", route.model)]
    if route.fallback is not None:
        specs.append(("fallback", route.fallback))
    for where, spec in specs:
        schema = schemas.get(spec.name or "")
        if schema is None:
            continue
        for tier in route.tiers:
            given: dict[str, Any] = model_inputs(spec, tier, prompt)
            given.update(image_inputs(spec, [b""] * photos))
            sent = {k: _as_sent(v) for k, v in given.items()}
            for error in input_errors(schema, sent):
                problems.append(f"{where} {spec.name}, tier {tier.key!r}: {error}")
    return problems


def _as_sent(value: Any) -> Any:
    """A photo as the SDK sends it (a URL); everything else as it is."""
    if isinstance(value, bytes):
        return _PHOTO_URL
    if isinstance(value, list):
        return [_as_sent(v) for v in value]
    return value
