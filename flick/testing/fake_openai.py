"""A local OpenAI: `POST /v1/images/edits` and `GET /v1/models[/{model}]`, checked against the spec.

    async with FakeOpenAI() as fake:
        client = openai.AsyncOpenAI(api_key="test", base_url=fake.base_url, max_retries=0)
        fake.script("images.edit", Fault.status(429, retry_after=1), Fault.moderation_blocked())
        ...
        assert fake.violations == []

Image edits answer with a real PNG in `b64_json` (the input photos side by side, scaled down so
tests stay fast) and a `usage` block shaped like the spec's `ImagesResponse`. Photos Pillow cannot
read are refused with 400 `invalid_image_format`, as OpenAI does; `sample_photo()` makes real ones.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Collection, Mapping
from typing import ClassVar

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from flick.testing.fake_http import Call, Route, SpecFake, header_seconds
from flick.testing.faults import Fault

__all__ = ["FakeOpenAI", "Fault", "sample_photo"]

_SIZES = ("1024x1024", "1024x1536", "1536x1024")
# Output tokens per picture, roughly OpenAI's published table for gpt-image-1 at 1024x1024.
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056, "standard": 1056}
_IMAGE_INPUT_TOKENS = 323
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}


def sample_photo(
    color: tuple[int, int, int] = (200, 120, 80),
    size: tuple[int, int] = (64, 64),
    fmt: str = "JPEG",
) -> bytes:
    """A small real photo (JPEG by default, as Telegram sends them) for tests."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


class FakeOpenAI(SpecFake):
    """OpenAI's images and models API on 127.0.0.1. Operations to script: "images.edit",
    "models.retrieve", "models.list"; images.edit also takes Fault.moderation_blocked() and
    Fault.malformed("no_image")."""

    spec_name = "openai"
    fault_kinds: ClassVar[Mapping[str, frozenset[str]]] = {
        "images.edit": frozenset({"moderation_blocked", "no_image"})
    }

    def __init__(
        self,
        *,
        api_key: str | None = None,
        latency: float = 0.0,
        models: Collection[str] | None = None,
        max_side: int = 96,
    ) -> None:
        super().__init__(api_key=api_key)
        self.latency = latency  # every images.edit without a scripted fault takes this long
        self.models = set(models) if models is not None else None  # None: every model exists
        self.max_side = max_side

    @property
    def base_url(self) -> str:
        """What to give `openai.AsyncOpenAI(base_url=...)`: the SDK expects the /v1 prefix."""
        return f"{self.origin}/v1"

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/images/edits", "images.edit", self._edit),
            Route("GET", "/v1/models/{model}", "models.retrieve", self._model),
            Route("GET", "/v1/models", "models.list", self._models),
        ]

    def error_response(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> web.Response:
        kind = _ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        headers = {} if retry_after is None else {"Retry-After": header_seconds(retry_after)}
        return web.json_response(body, status=status, headers=headers)

    async def _edit(self, call: Call) -> web.StreamResponse:
        if call.fault is None and self.latency:
            await asyncio.sleep(self.latency)
        if call.fault is not None and call.fault.kind == "moderation_blocked":
            return self._moderation_blocked()
        form = call.record.form
        photos = [
            part.data for name in ("image", "image[]") for part in call.record.files.get(name, [])
        ]
        try:
            png = await asyncio.to_thread(self._compose, photos, (form.get("size") or ["auto"])[0])
        except (UnidentifiedImageError, OSError):
            message = "Invalid image file or mode for an input image. Supported: png, jpeg, webp."
            return self.error_response(400, message, code="invalid_image_format")
        prompt = (form.get("prompt") or [""])[0]
        quality = (form.get("quality") or ["auto"])[0]
        size = (form.get("size") or ["auto"])[0]
        image_tokens = _IMAGE_INPUT_TOKENS * len(photos)
        text_tokens = len(prompt) // 4 + 1
        output_tokens = _OUTPUT_TOKENS.get(quality, 1056)
        body: dict[str, object] = {
            "created": int(time.time()),
            "background": "opaque",
            "output_format": "png",
            "usage": {
                "input_tokens": image_tokens + text_tokens,
                "output_tokens": output_tokens,
                "total_tokens": image_tokens + text_tokens + output_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
            },
        }
        if call.fault is not None and call.fault.kind == "no_image":
            body["data"] = []
        else:
            body["data"] = [{"b64_json": base64.b64encode(png).decode("ascii")}]
        if size in _SIZES:
            body["size"] = size
        if quality in ("low", "medium", "high"):
            body["quality"] = quality
        return self.reply(call, body)

    def _moderation_blocked(self) -> web.Response:
        message = (
            "Your request was rejected as a result of our safety system. Your request may contain "
            "content that is not allowed by our safety system."
        )
        body = {
            "error": {
                "message": message,
                "type": "image_generation_user_error",
                "param": None,
                "code": "moderation_blocked",
            }
        }
        return web.json_response(body, status=400)

    def _compose(self, photos: list[bytes], size: str) -> bytes:
        """The photos side by side on a canvas with the requested aspect, scaled to max_side."""
        width, height = (int(n) for n in size.split("x")) if size in _SIZES else (1024, 1024)
        scale = self.max_side / max(width, height)
        canvas = Image.new("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
        slot = canvas.width // max(1, len(photos))
        for index, data in enumerate(photos):
            with Image.open(io.BytesIO(data)) as photo:
                photo.load()
                tile = photo.convert("RGB")
            tile.thumbnail((max(1, slot), canvas.height))
            canvas.paste(tile, (index * slot, (canvas.height - tile.height) // 2))
        buf = io.BytesIO()
        canvas.save(buf, format="PNG")
        return buf.getvalue()

    async def _model(self, call: Call) -> web.StreamResponse:
        model = call.request.match_info["model"]
        if self.models is not None and model not in self.models:
            message = f"The model '{model}' does not exist or you do not have access to it."
            return self.error_response(404, message, code="model_not_found")
        return self.reply(call, _model_object(model))

    async def _models(self, call: Call) -> web.StreamResponse:
        names = sorted(self.models) if self.models is not None else ["gpt-image-1"]
        return self.reply(call, {"object": "list", "data": [_model_object(n) for n in names]})


def _model_object(model: str) -> dict[str, object]:
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
