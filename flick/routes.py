"""A style's route, video models and quality tiers, read from its table in the styles file.

    route = "direct"                       # or "compose_animate" (the default: today's route)
    [styles.<key>.model]                   # the video model (default: VIDEO_MODEL)
    name = "kwaivgi/kling-v1.6-standard"
    images = "reference_images"            # the input taking the picture(s): one field for a
                                           # list of both photos, or ["a", "b"], one per photo
    inputs = { aspect_ratio = "9:16" }
    duration_input = "duration"            # how this model names a tier's duration and
    resolution_input = ""                  # resolution ("" = the model has no such input)
    [styles.<key>.fallback]                # optional: the same fields, used while `model` is down
    [[styles.<key>.tiers]]                 # optional: quality tiers, chosen after the style
    key = "hd"; title = { en = "HD" }; credits = 2; usd = 0.5; duration = 10; resolution = "720p"

Parsing only, no I/O: `flick.styles` calls `parse_route` for each style and reports the problems
with the style's line. A style without tiers has one, `standard`, for one credit, which adds no
inputs: existing styles run exactly as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

RouteKind = Literal["compose_animate", "direct"]
ROUTES: tuple[RouteKind, ...] = ("compose_animate", "direct")
#: A tier's key goes into callback data (64 bytes with the style's key): keep it short.
_TIER_KEY = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_MODEL = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
DEFAULT_TIER = "standard"


@dataclass(frozen=True)
class ModelSpec:
    """One video model and how a style talks to it. `name` None: the provider's VIDEO_MODEL."""

    name: str | None = None
    images: str | tuple[str, ...] = "image"
    inputs: dict[str, Any] = field(default_factory=dict)
    duration_input: str = "duration"
    resolution_input: str = "resolution"


@dataclass(frozen=True)
class Tier:
    key: str
    titles: dict[str, str]
    credits: int = 1
    #: What the provider charges for one video of this tier (recorded as the generation's cost);
    #: None: predict seconds × REPLICATE_USD_PER_SECOND, as before tiers.
    usd: float | None = None
    duration: int | None = None
    resolution: str | None = None

    def title(self, lang: str) -> str:
        return self.titles.get(lang) or self.titles.get("en") or self.key


STANDARD = Tier(DEFAULT_TIER, {"en": "Standard", "ru": "Стандарт"})


@dataclass(frozen=True)
class Route:
    kind: RouteKind = "compose_animate"
    model: ModelSpec = field(default_factory=ModelSpec)
    fallback: ModelSpec | None = None
    tiers: tuple[Tier, ...] = (STANDARD,)

    def tier(self, key: str | None) -> Tier | None:
        """The tier `key` names, if the style still offers it."""
        return next((t for t in self.tiers if t.key == key), None)

    def spec(self, model: str | None) -> ModelSpec:
        """The spec of a model this route names (the fallback's when it is the fallback)."""
        if self.fallback is not None and model is not None and model == self.fallback.name:
            return self.fallback
        return self.model


def model_inputs(spec: ModelSpec, tier: Tier, prompt: str) -> dict[str, Any]:
    """The plain inputs of one prediction: the prompt, the model's inputs, the tier's."""
    inputs: dict[str, Any] = {"prompt": prompt, **spec.inputs}
    if tier.duration is not None and spec.duration_input:
        inputs[spec.duration_input] = tier.duration
    if tier.resolution is not None and spec.resolution_input:
        inputs[spec.resolution_input] = tier.resolution
    return inputs


def image_inputs(spec: ModelSpec, pictures: list[bytes]) -> dict[str, bytes | list[bytes]]:
    """Where the pictures go: one field per picture, or one field taking them all as a list
    (a compose route's single picture goes in that field as itself)."""
    if isinstance(spec.images, tuple):
        return dict(zip(spec.images, pictures, strict=True))
    if len(pictures) == 1:
        return {spec.images: pictures[0]}
    return {spec.images: list(pictures)}


def parse_route(spec: dict[str, Any], legacy_inputs: dict[str, Any]) -> tuple[Route | None, str]:
    """The style's route, or None and what is wrong with it."""
    kind = spec.get("route", "compose_animate")
    if kind not in ROUTES:
        return None, f"route must be one of {', '.join(ROUTES)}, not {kind!r}"
    model, problem = _model(spec.get("model"), "model", legacy_inputs, kind)
    if model is None:
        return None, problem
    fallback = None
    if "fallback" in spec:
        fallback, problem = _model(spec["fallback"], "fallback", {}, kind)
        if fallback is None:
            return None, problem
        if fallback.name is None or fallback.name == model.name:
            return None, 'fallback needs a name = "owner/model" other than the model\'s'
    tiers, problem = _tiers(spec.get("tiers"))
    if tiers is None:
        return None, problem
    return Route(kind, model, fallback, tiers), ""


def _model(
    raw: Any, where: str, legacy_inputs: dict[str, Any], kind: str
) -> tuple[ModelSpec | None, str]:
    if raw is None:
        if kind == "direct":
            return None, "a direct route needs a [model] table with name and images"
        return ModelSpec(inputs=dict(legacy_inputs)), ""
    if not isinstance(raw, dict):
        return None, f"{where} must be a table"
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not _MODEL.match(name)):
        return None, f"{where}.name must be owner/name (an official Replicate model)"
    images = raw.get("images", "image")
    if isinstance(images, list) and all(isinstance(i, str) and i for i in images):
        if kind != "direct" or len(images) != 2:
            return None, f"{where}.images as a list names one field per photo: two, direct only"
        images = tuple(images)
    elif not isinstance(images, str) or not images:
        return None, f"{where}.images must name an input field (or two, one per photo)"
    if kind == "direct" and name is None:
        return None, f"a direct route's {where} needs a name"
    inputs = raw.get("inputs", legacy_inputs if where == "model" else {})
    if not isinstance(inputs, dict):
        return None, f"{where}.inputs must be a table"
    names = {
        k: raw.get(k, k.removesuffix("_input")) for k in ("duration_input", "resolution_input")
    }
    if not all(isinstance(v, str) for v in names.values()):
        return None, f"{where}.duration_input and resolution_input must be text"
    return (
        ModelSpec(
            name=name,
            images=images,
            inputs=dict(inputs),
            duration_input=str(names["duration_input"]),
            resolution_input=str(names["resolution_input"]),
        ),
        "",
    )


def _tiers(raw: Any) -> tuple[tuple[Tier, ...] | None, str]:
    if raw is None:
        return (STANDARD,), ""
    if not isinstance(raw, list) or not raw:
        return None, "tiers must be a list of [[tiers]] tables"
    tiers: list[Tier] = []
    for item in raw:
        if not isinstance(item, dict):
            return None, "each [[tiers]] must be a table"
        key, titles = item.get("key"), item.get("title")
        if not isinstance(key, str) or not _TIER_KEY.match(key):
            return None, "a tier's key may use only letters, digits, _ and - (at most 16)"
        if any(t.key == key for t in tiers):
            return None, f"tier {key!r} is named twice"
        if not isinstance(titles, dict) or not isinstance(titles.get("en"), str):
            return None, f'tier {key!r} needs title = {{ en = "..." }}'
        credits = item.get("credits", 1)
        if not isinstance(credits, int) or isinstance(credits, bool) or not 1 <= credits <= 100:
            return None, f"tier {key!r}: credits must be a whole number from 1 to 100"
        usd = item.get("usd")
        if usd is not None and (not isinstance(usd, int | float) or usd < 0):
            return None, f"tier {key!r}: usd must be a number, at least 0"
        duration = item.get("duration")
        if duration is not None and (not isinstance(duration, int) or duration <= 0):
            return None, f"tier {key!r}: duration must be whole seconds"
        resolution = item.get("resolution")
        if resolution is not None and not isinstance(resolution, str):
            return None, f'tier {key!r}: resolution must be text such as "720p"'
        tiers.append(
            Tier(
                key=key,
                titles={str(k): str(v) for k, v in titles.items()},
                credits=credits,
                usd=None if usd is None else float(usd),
                duration=duration,
                resolution=resolution,
            )
        )
    return tuple(tiers), ""
