"""Finding, on Replicate, a prediction it accepted but whose id never reached us.

A kill or a lost answer between a create and its reply leaves a prediction Replicate runs and
bills, unknown to us. It is looked for through `GET /v1/predictions`. The SDK's
`predictions.async_list` takes no filters and parses each result into a model that rejects
statuses it does not know (the spec has "aborted") and predictions without a version: one odd
prediction anywhere on the account would break every page. So pages are read through the
provider's own client and parsed leniently here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from loguru import logger
from pydantic import v1 as pydantic

# Where a lost create's prediction can be: Replicate's clock may differ from ours by this much...
_CLOCK_SKEW = timedelta(minutes=1)
# ...and a create is accepted within this long after we asked for it (our timeouts end it sooner).
# The window is all the account's predictions of those minutes, whatever the app: keep it short.
_CREATE_WINDOW = timedelta(minutes=5)
# 100 predictions a page: the window holds a page or two, unless the account is very busy.
_MAX_PAGES = 10
# What may be adopted, best first. A failed one was paid for and would have failed the step
# had its id been saved: adopting it keeps that outcome rather than paying for a retry. A
# canceled one was given up on (by us, or by the user's /cancel); an aborted one never ran.
_ADOPTABLE = {"succeeded": 0, "processing": 1, "starting": 2, "failed": 3}


class _Page(pydantic.BaseModel):
    """One page of `GET /v1/predictions`; results are checked one by one, leniently."""

    next: str | None = None
    results: list[dict[str, Any]]


async def matching_predictions(
    get: Callable[[str], Awaitable[httpx.Response]],
    *,
    api_host: str,
    model: str,
    prompt: Any,
    images: Mapping[str, bytes | list[bytes]],
    since: datetime,
    skip: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The predictions of `model`, not canceled, with exactly this prompt and these images (each
    as a data URI, by input field), created in [since - skew, since + create window]; best to
    adopt first.

    `get` sends a GET to the API (a path or a URL) and raises on an error reply; its errors, and
    a malformed page's (pydantic.ValidationError is a ValueError), are the caller's to classify.
    """
    after, before = since - _CLOCK_SKEW, since + _CREATE_WINDOW
    query = urlencode({"created_after": _iso(after), "created_before": _iso(before)})
    url = f"/v1/predictions?{query}"
    found: list[dict[str, Any]] = []
    read_all = False
    for _ in range(_MAX_PAGES):
        response = await get(url)
        page = _Page.parse_obj(response.json())
        for item in page.results:
            if item.get("id") in skip or item.get("status") not in _ADOPTABLE:
                continue
            echoed = item.get("input")
            if (
                item.get("model") == model
                and isinstance(echoed, dict)
                and echoed.get("prompt") == prompt
                and images
                and all(_same_images(echoed.get(k), v) for k, v in images.items())
            ):
                found.append(item)
        oldest = _created(page.results[-1]) if page.results else None
        # Newest first: past the window's start, the rest is older still.
        past = oldest is not None and oldest < after
        following = None if past else _next_page(page.next, api_host)
        if following is None:
            read_all = True
            break
        url = following
    if not read_all:
        logger.warning("replicate: gave up on a lost prediction after {} pages", _MAX_PAGES)
    found.sort(key=lambda p: (_ADOPTABLE[p["status"]], str(p.get("created_at", ""))))
    return found


def _next_page(url: str | None, api_host: str) -> str | None:
    # Pages carry our token: follow `next` only on the API's own host.
    if url is None:
        return None
    if urlsplit(url).netloc not in ("", api_host):
        logger.warning("replicate: not following a next page on another host: {}", url)
        return None
    return url


def _same_images(echoed: Any, images: bytes | list[bytes]) -> bool:
    if isinstance(images, bytes):
        return _same_image(echoed, images)
    return (
        isinstance(echoed, list)
        and len(echoed) == len(images)
        and all(_same_image(e, i) for e, i in zip(echoed, images, strict=True))
    )


def _same_image(echoed: Any, image: bytes) -> bool:
    """Whether a prediction's echoed `image` input is `image`, sent as a data URI. Anything else
    (a link Replicate made of it, or the input deleted) is not known to be ours: no match."""
    if not isinstance(echoed, str) or not echoed.startswith("data:"):
        return False
    header, _, data = echoed.partition(",")
    if not header.endswith(";base64"):
        return False
    # Cheap first: base64 is 4 characters for every 3 bytes (ignoring line breaks).
    if abs(len(data) - 4 * ((len(image) + 2) // 3)) > 8 and "\n" not in data:
        return False
    try:
        return base64.b64decode(data) == image
    except (binascii.Error, ValueError):
        return False


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _created(item: Mapping[str, Any]) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(item["created_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
