"""Every decision about what a provider's failure means: transient (retry) or final (refund, tell).

The providers make one attempt per call and raise what these functions return; the pipeline retries
TransientError inside its time budget (honouring `retry_after`) and refunds on FinalError. Nothing
else decides, so the rules live in one place:

- timeouts, dropped connections, 408/409/425/429 and 5xx, replies that do not parse: transient;
- moderation refusals: final, kind "moderation_blocked", user_reason "moderation";
- 401/403: final, kind "auth"; 402: "billing"; 404: "not_found"; other 4xx: "invalid_request";
- a photo the image API cannot read: final, user_reason "bad_photo";
- a failed or canceled prediction, an output that is missing, not a video or too large: final.

- a direct model refusing the photos themselves (no face found, an aspect ratio it does not take):
  final, kind "input_refused", user_reason "no_face" or "bad_aspect".

user_reason values used here (message catalog keys): moderation, bad_photo, no_image, bad_output,
no_face, bad_aspect, generic.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Mapping

import aiohttp
import httpx
import openai
from pydantic.v1 import ValidationError as ReplicateModelError  # the replicate SDK's models
from replicate.exceptions import ReplicateError

from flick.errors import FinalError, ProviderError, TransientError
from flick.ports import Prediction

_MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
_PHOTO_CODES = frozenset(
    {"invalid_image", "invalid_image_format", "invalid_image_file", "image_too_large",
     "invalid_image_size", "unsupported_image_media_type", "image_parse_error"}
)  # fmt: skip
# What Replicate's models and safety checkers write when they refuse content.
_MODERATION_TEXT = re.compile(r"nsfw|sensitive|safety|flagged|moderat|E005", re.IGNORECASE)
# What models that take the photos themselves write when they find no usable face in one
# ("Could not detect face in the image", "no face detected", "face detection failed").
_NO_FACE_TEXT = re.compile(
    r"(detect|find|found|no)\W+(a\W+|any\W+)?faces?\b|\bfaces?\W+(not\W+)?(detect|found)",
    re.IGNORECASE,
)
_ASPECT_TEXT = re.compile(r"aspect[\s_-]*ratio", re.IGNORECASE)
# Replicate's throttling detail: "Request was throttled. Expected available in 3 seconds."
_THROTTLE_TEXT = re.compile(r"available in (\d+(?:\.\d+)?) second", re.IGNORECASE)
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_VIDEO_MAGIC = (b"\x1a\x45\xdf\xa3",)  # WebM/Matroska; MP4 is recognised by its ftyp box


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        return max(0.0, float(lowered["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = lowered.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _short(text: object, limit: int = 300) -> str:
    value = str(text)
    return value if len(value) <= limit else value[:limit] + "…"


def _by_status(
    provider: str, status: int, message: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    text = f"{provider}: HTTP {status}: {_short(message)}"
    if status in _TRANSIENT_STATUS or status >= 500:
        kind = "rate_limited" if status == 429 else "server_error" if status >= 500 else "busy"
        return TransientError(text, kind=kind, retry_after=retry_after(headers))
    if status in (401, 403):
        return FinalError(text, kind="auth")
    if status == 402:
        return FinalError(text, kind="billing")
    if status == 404:
        return FinalError(text, kind="not_found")
    if status == 413:
        return FinalError(text, kind="invalid_input", user_reason="bad_photo")
    return FinalError(text, kind="invalid_request")


def _network(provider: str, exc: BaseException) -> TransientError | None:
    """Timeouts and connection trouble, whichever HTTP library raised them."""
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | asyncio.TimeoutError):
        return TransientError(f"{provider}: timed out", kind="timeout")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError | aiohttp.ClientError):
        return TransientError(f"{provider}: connection failed: {_short(exc)}", kind="connection")
    if isinstance(exc, ConnectionError):
        return TransientError(f"{provider}: connection failed: {_short(exc)}", kind="connection")
    return None


def classify_openai(exc: BaseException) -> ProviderError:
    """What an exception from the openai SDK (or its reply's parsing) means for Flick."""
    network = _network("openai", exc)
    if network is not None:
        return network
    if isinstance(exc, openai.APIStatusError):
        code = exc.code or ""
        if exc.status_code == 400 and code in _MODERATION_CODES:
            message = f"openai: moderation_blocked: {_short(exc.message)}"
            return FinalError(message, kind="moderation_blocked", user_reason="moderation")
        if exc.status_code == 400 and code in _PHOTO_CODES:
            message = f"openai: {code}: {_short(exc.message)}"
            return FinalError(message, kind="invalid_input", user_reason="bad_photo")
        message = f"{code}: {exc.message}" if code else exc.message
        return _by_status("openai", exc.status_code, message, exc.response.headers)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
        # A garbled reply (a proxy cut it short, say): the next attempt may well be fine.
        return TransientError(f"openai: malformed reply: {_short(exc)}", kind="malformed_reply")
    return FinalError(f"openai: {type(exc).__name__}: {_short(exc)}", kind="provider_error")


def classify_replicate(exc: BaseException) -> ProviderError:
    """What an exception from the replicate SDK, httpx or aiohttp means for Flick.

    `exc.headers`, when the client attached the reply's headers to a ReplicateError, gives the
    Retry-After; else Replicate's own throttling message does.
    """
    network = _network("replicate", exc)
    if network is not None:
        return network
    if isinstance(exc, ReplicateError):
        detail = exc.detail or exc.title or "no detail"
        if exc.status is None:
            return TransientError(f"replicate: {_short(detail)}", kind="server_error")
        headers: Mapping[str, str] | None = getattr(exc, "headers", None)
        error = _by_status("replicate", exc.status, detail, headers)
        if isinstance(error, TransientError) and error.retry_after is None:
            found = _THROTTLE_TEXT.search(detail)
            error.retry_after = float(found.group(1)) if found else None
        refused = exc.status in (400, 422) and _MODERATION_TEXT.search(detail)
        if refused:
            message = f"replicate: {_short(detail)}"
            return FinalError(message, kind="moderation_blocked", user_reason="moderation")
        return error
    if isinstance(exc, json.JSONDecodeError | ReplicateModelError):  # a reply that does not parse
        return TransientError(f"replicate: malformed reply: {_short(exc)}", kind="malformed_reply")
    return FinalError(f"replicate: {type(exc).__name__}: {_short(exc)}", kind="provider_error")


def classify_prediction(prediction: Prediction) -> FinalError | None:
    """A prediction that ended without a usable output, as the error to raise; None otherwise.

    Still running, or succeeded with an output URL: None. The pipeline calls this on each poll.
    """
    if prediction.status == "failed":
        error = prediction.error or "no error given"
        if _MODERATION_TEXT.search(error):
            return FinalError(
                f"replicate: {prediction.id} refused: {_short(error)}",
                kind="moderation_blocked",
                user_reason="moderation",
            )
        for pattern, reason in ((_NO_FACE_TEXT, "no_face"), (_ASPECT_TEXT, "bad_aspect")):
            if pattern.search(error):
                return FinalError(
                    f"replicate: {prediction.id} refused its input: {_short(error)}",
                    kind="input_refused",
                    user_reason=reason,
                )
        return FinalError(
            f"replicate: {prediction.id} failed: {_short(error)}", kind="prediction_failed"
        )
    if prediction.status == "canceled":
        return FinalError(f"replicate: {prediction.id} was canceled", kind="prediction_canceled")
    if prediction.status == "succeeded" and not prediction.output_url:
        message = f"replicate: {prediction.id} succeeded without an output"
        return FinalError(message, kind="no_output", user_reason="bad_output")
    return None


def classify_output(status: int, headers: Mapping[str, str], head: bytes) -> ProviderError | None:
    """The reply to downloading a prediction's output: None when it is a video.

    `head` is the body's first bytes (at least 12 when the body has them).
    """
    if status in _TRANSIENT_STATUS or status >= 500:
        return _by_status("replicate output", status, "download failed", headers)
    if not 200 <= status < 300:
        # 404 or 410: Replicate deleted it (outputs live about an hour) or the link is wrong.
        message = f"replicate output: HTTP {status}"
        return FinalError(message, kind="bad_output", user_reason="bad_output")
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    sniffed_video = head[4:8] == b"ftyp" or head.startswith(_VIDEO_MAGIC)
    looks_like_page = head.lstrip()[:1] in (b"<", b"{")
    if sniffed_video or (content_type.startswith("video/") and head and not looks_like_page):
        return None
    message = f"replicate output is not a video ({content_type or 'no content type'})"
    return FinalError(message, kind="bad_output", user_reason="bad_output")


def no_image(detail: str) -> FinalError:
    """The image API answered without a usable picture."""
    return FinalError(
        f"openai: no image in the reply: {detail}", kind="no_image", user_reason="no_image"
    )


def unsupported_photo(index: int) -> FinalError:
    """A photo in a format the image API does not take (it reads png, jpeg, webp)."""
    message = f"photo {index} is not png, jpeg or webp"
    return FinalError(message, kind="invalid_input", user_reason="bad_photo")


def video_too_large(limit: int) -> FinalError:
    message = f"replicate output is larger than {limit} bytes"
    return FinalError(message, kind="video_too_large", user_reason="bad_output")
