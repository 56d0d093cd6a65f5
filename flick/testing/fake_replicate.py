"""A local Replicate: official-model predictions, polling, cancel, account and output files.

    async with FakeReplicate(run_time=0.1) as fake:
        client = replicate.Client(api_token="test", base_url=fake.base_url)
        fake.script("predictions.create", Fault.prediction_fails("NSFW content detected"))
        fake.script("output", Fault.output_404())
        ...
        assert fake.violations == []

Every API request is checked against the spec (`flick.testing.specs`). A prediction is
`starting` for `start_delay` seconds, `processing` for `run_time`, then `succeeded` with an output
URL served by the fake itself: a tiny real MP4, made once per process with imageio-ffmpeg's
ffmpeg. States are computed from the clock when asked, so no background task runs. Like
replicate.delivery, the output route is not part of the API spec: it is recorded (op "output"),
not validated.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import re
import secrets
import string
import subprocess
import tempfile
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import imageio_ffmpeg
from aiohttp import web

from flick.model_schemas import input_errors, input_schemas
from flick.testing.fake_http import Call, Route, SpecFake, header_seconds
from flick.testing.faults import Fault

__all__ = ["FakePrediction", "FakeReplicate", "Fault", "input_schemas", "sample_mp4"]

_ID_ALPHABET = string.ascii_lowercase + string.digits
_CHUNK = 64 * 1024
_TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


@functools.cache
def sample_mp4() -> bytes:
    """A tiny real MP4 (H.264, 64x64, half a second): a few KB, starting with an `ftyp` box."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.mp4"  # the mp4 muxer cannot write to a pipe
        source = "testsrc=size=64x64:rate=8:duration=0.5"
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", source,
             "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return path.read_bytes()


@dataclass
class FakePrediction:
    id: str
    model: str
    input: dict[str, Any]
    created: float  # time.monotonic()
    created_at: datetime
    start_delay: float
    run_time: float
    fails: str | None = None  # the error it ends with
    never_finishes: bool = False
    aborts: bool = False  # terminated when it would have started: never ran, never billed
    canceled_at: float | None = None

    @property
    def started(self) -> float:
        return self.created + self.start_delay

    @property
    def done(self) -> float:
        if self.aborts:
            return self.started
        return math.inf if self.never_finishes else self.started + self.run_time

    @property
    def ended(self) -> float:
        """When it stopped running (inf: it has not)."""
        return self.done if self.canceled_at is None else min(self.done, self.canceled_at)

    def status(self, now: float) -> str:
        if self.canceled_at is not None and self.canceled_at < self.done:
            return "canceled"
        if now < self.started:
            return "starting"
        if self.aborts:
            return "aborted"
        if now < self.done:
            return "processing"
        return "failed" if self.fails is not None else "succeeded"


class FakeReplicate(SpecFake):
    """Replicate's API on 127.0.0.1. Operations to script: "predictions.create" (also takes
    prediction_fails, never_finishes, lost_reply, prediction_aborted), "predictions.get",
    "predictions.list", "predictions.cancel", "account.get", "output" (also takes output_404,
    output_html, output_large).

    `predictions.list` answers as Replicate does: newest first, `page_size` a page (100), `next`
    a full URL carrying an opaque cursor, filtered by `created_after` / `created_before`."""

    spec_name = "replicate"
    fault_kinds: ClassVar[Mapping[str, frozenset[str]]] = {
        "predictions.create": frozenset(
            {"prediction_fails", "never_finishes", "lost_reply", "prediction_aborted"}
        ),
        "output": frozenset({"output_404", "output_html", "output_large"}),
    }

    def __init__(
        self,
        *,
        api_token: str | None = None,
        start_delay: float = 0.05,
        run_time: float = 0.15,
        models: Collection[str] | None = None,
        page_size: int = 100,
        schemas: Mapping[str, Mapping[str, Any]] | None = None,
        require_schemas: bool = False,
    ) -> None:
        super().__init__(api_key=api_token)
        self.start_delay = start_delay
        self.run_time = run_time
        self.page_size = page_size
        self.models = set(models) if models is not None else None  # None: every model exists
        self.predictions: dict[str, FakePrediction] = {}
        #: Each model's input schema: a prediction's `input` is checked against its model's
        #: (a violation, and a 422 as Replicate answers). `require_schemas`: a model without
        #: one is a violation too.
        self.schemas = dict(input_schemas() if schemas is None else schemas)
        self.require_schemas = require_schemas
        #: What a succeeded prediction's output URL serves (default: `sample_mp4()`).
        self.output_file: Path | None = None

    @property
    def base_url(self) -> str:
        """What to give `replicate.Client(base_url=...)`: the SDK adds /v1 to its paths itself."""
        return self.origin

    @property
    def predictions_created(self) -> int:
        return len(self.predictions)

    def running(self, at: float | None = None) -> int:
        """Predictions starting or processing at `at` (time.monotonic(); default: now)."""
        now = time.monotonic() if at is None else at
        return sum(1 for p in self.predictions.values() if p.created <= now < p.ended)

    @property
    def max_running(self) -> int:
        """The most predictions that were ever starting or processing at once."""
        events = sorted(
            [(p.created, 1) for p in self.predictions.values()]
            + [(p.ended, -1) for p in self.predictions.values()]
        )  # at equal times the end (-1) sorts first: back-to-back runs do not overlap
        most = current = 0
        for _, delta in events:
            current += delta
            most = max(most, current)
        return most

    async def __aenter__(self) -> FakeReplicate:
        await asyncio.to_thread(sample_mp4)  # make it now, not inside the first download
        await super().__aenter__()
        return self

    def routes(self) -> list[Route]:
        return [
            Route(
                "POST", "/v1/models/{owner}/{name}/predictions", "predictions.create", self._create
            ),
            Route("GET", "/v1/predictions", "predictions.list", self._list),
            Route("GET", "/v1/predictions/{id}", "predictions.get", self._get),
            Route("POST", "/v1/predictions/{id}/cancel", "predictions.cancel", self._cancel),
            Route("GET", "/v1/account", "account.get", self._account),
            Route("GET", "/delivery/{id}/output.mp4", "output", self._output, checked=False),
        ]

    def error_response(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> web.Response:
        # Replicate answers errors as RFC 7807 problem details.
        body = {"title": _reason(status), "detail": message, "status": status}
        headers = {} if retry_after is None else {"Retry-After": header_seconds(retry_after)}
        return web.json_response(body, status=status, headers=headers)

    async def _create(self, call: Call) -> web.StreamResponse:
        model = f"{call.request.match_info['owner']}/{call.request.match_info['name']}"
        if self.models is not None and model not in self.models:
            return self.error_response(404, "The requested resource could not be found.")
        problem = self._check_input(model, call.record.json["input"])
        if problem is not None:
            self._violate(call.record, problem)
            return self.error_response(422, problem)
        fault = call.fault
        prediction = FakePrediction(
            id="".join(secrets.choice(_ID_ALPHABET) for _ in range(26)),
            model=model,
            input=dict(call.record.json["input"]),
            created=time.monotonic(),
            created_at=datetime.now(UTC),
            start_delay=self.start_delay,
            run_time=self.run_time,
            fails=fault.message if fault is not None and fault.kind == "prediction_fails" else None,
            never_finishes=fault is not None and fault.kind == "never_finishes",
            aborts=fault is not None and fault.kind == "prediction_aborted",
        )
        self.predictions[prediction.id] = prediction
        if fault is not None and fault.kind == "lost_reply":
            # Accepted and billed; the client never hears of it.
            await asyncio.sleep(fault.hold)
            if call.request.transport is not None:
                call.request.transport.close()
            return web.Response(status=499)
        return self.reply(call, self._json(prediction), status=201)

    def _check_input(self, model: str, given: Any) -> str | None:
        schema = self.schemas.get(model)
        if schema is None:
            return (
                f"{model} has no input schema in flick/model_inputs"
                if self.require_schemas
                else None
            )
        errors = input_errors(dict(schema), given)
        return "; ".join(errors) if errors else None

    async def _list(self, call: Call) -> web.StreamResponse:
        query = call.request.query
        bounds: dict[str, datetime] = {}
        for name in ("created_after", "created_before"):
            if name in query:
                try:
                    bounds[name] = _parse_time(query[name])
                except ValueError:
                    problem = f"query parameter {name}: {query[name]!r} is not a date-time"
                    self._violate(call.record, problem)  # the spec's format: date-time
                    return self.error_response(400, problem)
        after = bounds.get("created_after")
        before = bounds.get("created_before")
        found = sorted(
            (
                p
                for p in self.predictions.values()
                if (after is None or p.created_at >= after)
                and (before is None or p.created_at < before)
            ),
            key=lambda p: (p.created_at, p.created),
            reverse=True,
        )
        try:
            offset = int(query.get("cursor", "0"))
        except ValueError:
            return self.error_response(400, "Invalid cursor.")
        page = found[offset : offset + self.page_size]

        kept = {key: query[key] for key in ("created_after", "created_before") if key in query}

        def link(at: int) -> str:
            return f"{self.origin}/v1/predictions?{urlencode({**kept, 'cursor': str(at)})}"

        more = offset + self.page_size < len(found)
        body = {
            "next": link(offset + self.page_size) if more else None,
            "previous": link(max(0, offset - self.page_size)) if offset > 0 else None,
            "results": [self._json(p) for p in page],
        }
        return self.reply(call, body)

    async def _get(self, call: Call) -> web.StreamResponse:
        prediction = self.predictions.get(call.request.match_info["id"])
        if prediction is None:
            return self.error_response(404, "Not found.")
        return self.reply(call, self._json(prediction))

    async def _cancel(self, call: Call) -> web.StreamResponse:
        prediction = self.predictions.get(call.request.match_info["id"])
        if prediction is None:
            return self.error_response(404, "Not found.")
        now = time.monotonic()
        if prediction.status(now) not in _TERMINAL:  # canceling a finished one changes nothing
            prediction.canceled_at = now
        return self.reply(call, self._json(prediction))

    async def _account(self, call: Call) -> web.StreamResponse:
        return self.reply(call, {"type": "user", "username": "flick-test", "name": "Flick Test"})

    async def _output(self, call: Call) -> web.StreamResponse:
        prediction = self.predictions.get(call.request.match_info["id"])
        kind = call.fault.kind if call.fault is not None else None
        if (
            kind == "output_404"
            or prediction is None
            or prediction.status(time.monotonic()) != "succeeded"
        ):
            return web.Response(status=404, text="<html><h1>404 Not Found</h1></html>",
                                content_type="text/html")  # fmt: skip
        if kind == "output_html":
            page = "<!doctype html><html><body><h1>Sign in to continue</h1></body></html>"
            return web.Response(text=page, content_type="text/html")
        if kind == "output_large" and call.fault is not None:
            return await self._large(call, call.fault.n_bytes, call.fault.chunked)
        if self.output_file is not None:
            return web.FileResponse(self.output_file, headers={"Content-Type": "video/mp4"})
        return web.Response(body=sample_mp4(), content_type="video/mp4")

    async def _large(self, call: Call, n_bytes: int, chunked: bool) -> web.StreamResponse:
        """A real MP4 head padded to `n_bytes`, streamed so the fake never holds it whole."""
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = n_bytes
        await response.prepare(call.request)
        head = sample_mp4()[:n_bytes]
        await response.write(head)
        left = n_bytes - len(head)
        zeros = bytes(_CHUNK)
        try:
            while left > 0:
                await response.write(zeros[: min(left, _CHUNK)])
                left -= min(left, _CHUNK)
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading: what a size limit is supposed to do
        return response

    def _json(self, prediction: FakePrediction) -> dict[str, Any]:
        status = prediction.status(time.monotonic())
        url = f"{self.origin}/v1/predictions/{prediction.id}"
        body: dict[str, Any] = {
            "id": prediction.id,
            "model": prediction.model,
            "version": hashlib.sha256(prediction.model.encode()).hexdigest(),
            "input": prediction.input,
            "logs": "",
            "output": None,
            "error": prediction.fails if status == "failed" else None,
            "status": status,
            "source": "api",
            "data_removed": False,
            "created_at": _iso(prediction.created_at),
            "urls": {
                "get": url,
                "cancel": f"{url}/cancel",
                "web": f"https://replicate.com/p/{prediction.id}",
            },
            "metrics": {},
        }
        if status == "succeeded":
            body["output"] = f"{self.origin}/delivery/{prediction.id}/output.mp4"
        if status != "starting":
            body["started_at"] = _iso(prediction.created_at, prediction.start_delay)
        if status in _TERMINAL:
            total = prediction.ended - prediction.created
            body["completed_at"] = _iso(prediction.created_at, total)
            predict = max(0.0, prediction.ended - prediction.started)
            body["metrics"] = {"predict_time": round(predict, 6), "total_time": round(total, 6)}
        return body


def _parse_time(text: str) -> datetime:
    """An RFC 3339 date-time (OpenAPI's `format: date-time`); ValueError if it is not one."""
    if not _DATE_TIME.fullmatch(text):
        raise ValueError(text)
    return datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))


def _iso(at: datetime, plus: float = 0.0) -> str:
    return (at + timedelta(seconds=plus)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
