"""VideoProvider on Replicate: an image-to-video model, through the replicate SDK's async API.

One attempt per call. The SDK wraps every client in a RetryTransport that silently retries GETs on
429/503/504 up to ten times, sleeping as long as Retry-After says; that would spend the pipeline's
time budget behind its back. `_Client` keeps the SDK's API and models but sends its requests
through our own httpx client with no retries, and keeps the reply headers on errors so the
classifier can honour Retry-After. The image goes inline as a data URI (Replicate cannot reach our
storage, and a link would have to outlive the prediction); outputs are streamed with aiohttp.

`find_accepted` adopts a prediction Replicate accepted but whose id never reached us (a kill or a
lost answer between the create and its reply); `replicate_lookup` pages and matches for it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime
from typing import Any, Self, cast, get_args
from urllib.parse import quote, urlsplit

import aiohttp
import httpx
from loguru import logger
from replicate.__about__ import __version__ as replicate_version
from replicate.client import Client
from replicate.exceptions import ReplicateError

from flick.errors import ConfigError, ProviderError
from flick.pipeline.classify import (
    classify_output,
    classify_prediction,
    classify_replicate,
    video_too_large,
)
from flick.pipeline.replicate_lookup import matching_predictions
from flick.ports import Prediction, PredictionStatus
from flick.settings import Settings

DEFAULT_BASE_URL = "https://api.replicate.com"
_CHUNK = 64 * 1024
_HEAD = 12  # enough for an MP4's ftyp box or a page's first tag
# Errors raised while talking to Replicate that classify_replicate understands.
_STATUSES: frozenset[str] = frozenset(get_args(PredictionStatus))
_ERRORS = (ReplicateError, httpx.HTTPError, aiohttp.ClientError, TimeoutError, ValueError)


class ReplicateHTTPError(ReplicateError):
    """ReplicateError plus the reply's headers (for Retry-After)."""

    headers: Mapping[str, str] = {}


class _Client(Client):
    def __init__(self, api_token: str, base_url: str, timeout: httpx.Timeout) -> None:
        super().__init__(api_token=api_token, base_url=base_url, timeout=timeout)
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {api_token}",
                "User-Agent": f"flick replicate-python/{replicate_version}",
            },
            timeout=timeout,
            transport=httpx.AsyncHTTPTransport(retries=0),
        )

    async def _async_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # The SDK passes timeout=None for predictions.create, which httpx reads as "no timeout at
        # all": keep the client's.
        if kwargs.get("timeout", 0) is None:
            del kwargs["timeout"]
        response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            error = cast(ReplicateHTTPError, ReplicateHTTPError.from_response(response))
            error.headers = response.headers
            raise error
        return response


class ReplicateVideoProvider:
    name = "replicate"

    def __init__(
        self,
        api_token: str,
        *,
        model: str = "wan-video/wan-2.2-i2v-fast",
        base_url: str | None = None,
        max_bytes: int = 200 * 1024 * 1024,
        timeout: float = 30.0,
        download_timeout: float = 60.0,
    ) -> None:
        self.model = _official(model)
        self.max_bytes = max_bytes
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._api_host = urlsplit(self.base_url).netloc
        self._auth = {"Authorization": f"Bearer {api_token}"}
        self._download_timeout = download_timeout
        self._client = _Client(api_token, self.base_url, httpx.Timeout(timeout, connect=10.0))

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 30.0) -> Self:
        if settings.replicate_api_token is None:
            hint = "a token from https://replicate.com/account/api-tokens, or VIDEO_PROVIDER=local"
            raise ConfigError([("REPLICATE_API_TOKEN", "is not set", hint)])
        return cls(
            settings.replicate_api_token.get_secret_value(),
            model=settings.video_model,
            base_url=settings.replicate_base_url,
            max_bytes=settings.max_video_bytes,
            timeout=timeout,
        )

    async def start(
        self,
        image: bytes | None,
        content_type: str,
        inputs: Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> str:
        payload = _payload(image, content_type, inputs)
        model = _official(model or self.model)
        try:
            created = await self._client.models.predictions.async_create(model=model, input=payload)
        except _ERRORS as exc:
            raise self._failed("create", exc) from exc
        logger.info("replicate prediction {} created ({})", created.id, model)
        return str(created.id)

    async def find_accepted(
        self,
        image: bytes | None,
        content_type: str,
        inputs: Mapping[str, Any],
        *,
        since: datetime,
        skip: Collection[str] = (),
        model: str | None = None,
    ) -> str | None:
        """A prediction of our model, not canceled, with exactly the prompt and image `start`
        would send, created in [since - skew, since + create window]; the others found are
        cancelled. Callers make the image unique to their job, so a match is never someone
        else's prediction."""
        try:
            found = await matching_predictions(
                lambda url: self._client._async_request("GET", url),
                api_host=self._api_host,
                model=_official(model or self.model),
                prompt=inputs.get("prompt"),
                images=_images(image, inputs),
                since=since,
                skip=skip,
            )
        except _ERRORS as exc:  # a malformed page too: pydantic.ValidationError is a ValueError
            raise self._failed("list", exc) from exc
        if not found:
            return None
        adopted, *others = found
        logger.warning(
            "replicate prediction {} adopted: created for us, its id had not reached us",
            adopted["id"],
        )
        for other in others:
            if other["status"] in ("succeeded", "failed"):
                continue  # ended: cancelling changes nothing
            try:
                await self.cancel(str(other["id"]))
            except ProviderError as exc:
                logger.warning("could not cancel duplicate prediction {}: {}", other["id"], exc)
        return str(adopted["id"])

    async def poll(self, prediction_id: str) -> Prediction:
        # Read as plain JSON, not through the SDK's model: its status Literal lacks the API's
        # `aborted` (terminated before it ran), and such a reply would be a parse error.
        try:
            response = await self._client._async_request(
                "GET", f"/v1/predictions/{quote(prediction_id, safe='')}"
            )
            found = response.json()
            status = found["status"]
        except (*_ERRORS, KeyError, TypeError) as exc:
            raise self._failed("get", exc) from exc
        if status not in _STATUSES:
            raise self._failed("get", ValueError(f"unknown prediction status {status!r}"))
        metrics = found.get("metrics") or {}
        predict_time = metrics.get("predict_time")
        error = found.get("error")
        return Prediction(
            id=str(found.get("id", prediction_id)),
            status=status,
            output_url=_output_url(found.get("output")),
            error=None if error is None else str(error),
            predict_time=float(predict_time) if predict_time is not None else None,
        )

    async def open_output(self, prediction: Prediction) -> AsyncIterator[bytes]:
        """Stream the video in chunks; FinalError if it is gone, not a video or too large."""
        failure = classify_prediction(prediction)
        if failure is not None:
            raise failure
        if prediction.status != "succeeded" or prediction.output_url is None:
            raise ValueError(f"prediction {prediction.id} has not succeeded ({prediction.status})")
        url = prediction.output_url
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=self._download_timeout
        )
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=self._auth_for(url)) as response,
            ):
                size = response.content_length
                if size is not None and size > self.max_bytes and response.status < 300:
                    raise video_too_large(self.max_bytes)  # fail before downloading any of it
                chunks = response.content.iter_chunked(_CHUNK)
                head = b""
                async for chunk in chunks:
                    head += chunk
                    if len(head) >= _HEAD:
                        break
                verdict = classify_output(response.status, response.headers, head)
                if verdict is not None:
                    raise verdict
                total = len(head)
                if total > self.max_bytes:
                    raise video_too_large(self.max_bytes)
                yield head
                async for chunk in chunks:
                    total += len(chunk)
                    if total > self.max_bytes:  # no Content-Length, or a wrong one
                        raise video_too_large(self.max_bytes)
                    yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed("download", exc) from exc
        logger.info("replicate output of {}: {} bytes", prediction.id, total)

    async def cancel(self, prediction_id: str) -> None:
        try:
            await self._client.predictions.async_cancel(prediction_id)
        except _ERRORS as exc:
            raise self._failed("cancel", exc) from exc
        logger.info("replicate prediction {} canceled", prediction_id)

    async def check(self) -> None:
        """GET /v1/account: proves the token works, costs nothing."""
        try:
            await self._client.accounts.async_current()
        except _ERRORS as exc:
            raise self._failed("account", exc) from exc

    async def aclose(self) -> None:
        await self._client.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _failed(self, action: str, exc: BaseException) -> Exception:
        error = classify_replicate(exc)
        logger.warning("replicate {} failed: kind={}: {}", action, error.kind, error)
        return error

    def _auth_for(self, url: str) -> dict[str, str]:
        # Replicate wants the token on output downloads; never send it to any other host.
        host = urlsplit(url).netloc
        name = host.split(":")[0]
        trusted = host == self._api_host or name == "replicate.delivery"
        trusted = trusted or name.endswith(".replicate.delivery")
        return self._auth if trusted else {}


def _official(model: str) -> str:
    if model.count("/") != 1 or ":" in model:
        raise ValueError(f"video model must be owner/name (an official model), not {model!r}")
    return model


def _images(image: bytes | None, inputs: Mapping[str, Any]) -> dict[str, bytes | list[bytes]]:
    """The pictures a prediction is sent, by input field: `image`, and any input given as bytes
    (or a list of bytes: a model taking several reference images)."""
    found: dict[str, bytes | list[bytes]] = {}
    for name, value in inputs.items():
        if isinstance(value, bytes):
            found[name] = value
        elif isinstance(value, list) and value and all(isinstance(v, bytes) for v in value):
            found[name] = list(value)
    if image is not None:
        found["image"] = image
    return found


def _payload(image: bytes | None, content_type: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    def uri(data: bytes) -> str:
        return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"

    payload = dict(inputs)
    for name, value in _images(image, inputs).items():
        # Inline (Replicate cannot reach our storage); our image wins over any in the style.
        payload[name] = uri(value) if isinstance(value, bytes) else [uri(v) for v in value]
    return payload


def _output_url(output: Any) -> str | None:
    """The video's URL: models answer a URL, a list of URLs, or an object holding one."""
    if isinstance(output, str):
        return output
    if isinstance(output, list | tuple):
        return next((item for item in output if isinstance(item, str)), None)
    if isinstance(output, dict):
        return next((v for v in output.values() if isinstance(v, str) and "://" in v), None)
    return None
