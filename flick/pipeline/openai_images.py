"""ImageProvider on OpenAI's GPT-Image: both photos go to `images.edit` in one request.

One attempt per call: the SDK's own retries are off (`max_retries=0`), because the pipeline retries
with backoff inside the step's time budget, and a hidden retry loop would spend that budget (and
money) behind its back. Failures are raised as classified by `flick.pipeline.classify`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib
import json
import time
from collections.abc import Sequence
from typing import Any, Literal, Self

import openai
from loguru import logger

from flick.errors import ConfigError
from flick.pipeline.classify import classify_openai, no_image, unsupported_photo
from flick.ports import ComposedImage
from flick.settings import Settings

Quality = Literal["low", "medium", "high", "auto"]
Fidelity = Literal["low", "high"]

# The formats the images API reads, recognised by their first bytes (Telegram sends JPEG).
_FORMATS = ((b"\xff\xd8\xff", "jpg", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "png", "image/png"))


def photo_type(data: bytes) -> tuple[str, str] | None:
    """(file extension, MIME type) of a png, jpeg or webp photo; None for anything else."""
    for magic, ext, mime in _FORMATS:
        if data.startswith(magic):
            return ext, mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", "image/webp"
    return None


class OpenAIImageProvider:
    name = "openai"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        model: str = "gpt-image-1",
        quality: Quality = "medium",
        size: str = "1024x1536",
        input_fidelity: Fidelity = "high",
        timeout: float = 120.0,
    ) -> None:
        self.model = model
        self.quality: Quality = quality
        self.size = size
        self.input_fidelity: Fidelity = input_fidelity
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 120.0) -> Self:
        if settings.openai_api_key is None:
            hint = "an API key from https://platform.openai.com/api-keys, or IMAGE_PROVIDER=local"
            raise ConfigError([("OPENAI_API_KEY", "is not set", hint)])
        return cls(
            settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            model=settings.image_model,
            quality=settings.image_quality,
            size=settings.image_size,
            input_fidelity=settings.image_input_fidelity,
            timeout=timeout,
        )

    async def compose(self, photos: Sequence[bytes], prompt: str, style: str) -> ComposedImage:
        if not 1 <= len(photos) <= 16:  # the API takes 1 to 16 images per edit
            raise ValueError(f"compose takes 1 to 16 photos, got {len(photos)}")
        files = []
        for index, data in enumerate(photos, start=1):
            kind = photo_type(data)
            if kind is None:
                raise unsupported_photo(index)  # refuse before paying for a call that must fail
            files.append((f"photo{index}.{kind[0]}", data, kind[1]))
        started = time.monotonic()
        try:
            reply = await self._client.images.edit(
                model=self.model,
                image=files,
                prompt=prompt,
                quality=self.quality,
                size=self.size,
                input_fidelity=self.input_fidelity,
                n=1,
            )
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            error = classify_openai(exc)
            logger.warning(
                "openai images.edit failed: style={} kind={} after {:.1f}s: {}",
                style, error.kind, time.monotonic() - started, error,
            )  # fmt: skip
            raise error from exc
        encoded = reply.data[0].b64_json if reply.data else None
        if not encoded:
            raise no_image("the reply has no b64_json")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise no_image("b64_json does not decode") from exc
        kind = photo_type(data)
        if kind is None:
            raise no_image(f"b64_json is not a png, jpeg or webp ({reply.output_format})")
        cost: dict[str, Any] = {
            "provider": self.name,
            "model": self.model,
            "quality": self.quality,
            "size": self.size,
        }
        if reply.usage is not None:
            cost.update(reply.usage.model_dump(exclude_none=True))
        logger.info(
            "openai images.edit: style={} {} bytes in {:.1f}s, tokens={}",
            style, len(data), time.monotonic() - started, cost.get("total_tokens"),
        )  # fmt: skip
        return ComposedImage(data=data, content_type=kind[1], cost=cost)

    async def check(self) -> None:
        """Retrieve the configured model: proves the key works and can use that model."""
        try:
            await self._client.models.retrieve(self.model)
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            raise classify_openai(exc) from exc

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Self:
        self.warm()
        return self

    def warm(self) -> None:
        """Do the SDK's lazy set-up now, at start-up, rather than in the first user's
        `images.edit`, on the event loop: resolving `client.images` imports every resource module
        of the SDK (~0.5 s of CPU), and the first request imports anyio's asyncio backend."""
        _ = self._client.images.edit
        with contextlib.suppress(ImportError):  # what httpcore imports on its first request
            importlib.import_module("anyio._backends._asyncio")

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
