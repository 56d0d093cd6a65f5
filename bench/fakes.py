"""The fake OpenAI and Replicate in a process of their own, for the benchmarks that measure Flick.

In Flick's process their request validation, image composing and video streaming would be
charged to Flick. Here they run beside it, reachable on 127.0.0.1, and report what they saw:
`time.monotonic()` is the system's CLOCK_MONOTONIC, so their timestamps compare with Flick's.

    async with FakeProviders(image_latency=1.0, run_time=2.0, output_bytes=10 << 20) as fakes:
        ... fakes.openai_url, fakes.replicate_url ...
        stats = await fakes.stats()    # images.edit and output timings, predictions

Child side: `python -m bench.fakes` reads commands on stdin ("stats", "size N"), answers on
stdout, and exits at end of input (so it never outlives the benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from types import TracebackType
from typing import Any

from aiohttp import web

from flick.testing.fake_http import Call
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate

OPENAI_KEY = "sk-bench-not-a-real-key"
REPLICATE_TOKEN = "r8_bench-not-a-real-token"
VIDEO_MODEL = "wan-video/wan-2.2-i2v-fast"
DIRECT_MODEL = "kwaivgi/kling-v1.6-standard"


class SizedReplicate(FakeReplicate):
    """FakeReplicate whose every output is a real MP4 head padded to `output_bytes`, streamed
    (the fake never holds it whole); 0 keeps the tiny sample video."""

    output_bytes = 0

    async def _output(self, call: Call) -> web.StreamResponse:
        if call.fault is None and self.output_bytes:
            import time

            prediction = self.predictions.get(call.request.match_info["id"])
            if prediction is not None and prediction.status(time.monotonic()) == "succeeded":
                return await self._large(call, self.output_bytes, False)
        return await super()._output(call)


def _stats(openai: FakeOpenAI, replicate: SizedReplicate) -> dict[str, Any]:
    return {
        "edits": [
            (r.started, r.finished, r.status) for r in openai.requests if r.op == "images.edit"
        ],
        "outputs": [
            (r.path.split("/")[2], r.started, r.finished)
            for r in replicate.requests
            if r.op == "output"
        ],
        "predictions": {
            p.id: (p.created, p.start_delay, p.run_time) for p in replicate.predictions.values()
        },
        "polls": sum(1 for r in replicate.requests if r.op == "predictions.get"),
        "max_edits_in_flight": openai.max_in_flight_by_op.get("images.edit", 0),
        "max_running_predictions": replicate.max_running,
        "violations": [str(v) for v in [*openai.violations, *replicate.violations]][:5],
    }


async def _serve(args: argparse.Namespace) -> None:
    oa = FakeOpenAI(api_key=OPENAI_KEY, latency=args.image_latency, models={"gpt-image-1"})
    rep = SizedReplicate(
        api_token=REPLICATE_TOKEN,
        start_delay=args.start_delay,
        run_time=args.run_time,
        # bench.pipeline's direct-route style asks Kling; every model's input is schema-checked.
        models={VIDEO_MODEL, DIRECT_MODEL},
        require_schemas=True,
    )
    async with oa, rep:
        rep.output_bytes = args.output_bytes
        print(json.dumps({"openai": oa.base_url, "replicate": rep.base_url}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            words = line.decode().split()
            if words[:1] == ["size"]:
                rep.output_bytes = int(words[1])
                print(json.dumps({"ok": True}), flush=True)
            elif words[:1] == ["latency"]:
                oa.latency, rep.start_delay, rep.run_time = map(float, words[1:4])
                print(json.dumps({"ok": True}), flush=True)
            elif words[:1] == ["stats"]:
                print(json.dumps(_stats(oa, rep)), flush=True)


class FakeProviders:
    """Starts `python -m bench.fakes` and talks to it; stopped (and reaped) on exit."""

    def __init__(
        self,
        *,
        image_latency: float = 0.0,
        start_delay: float = 0.0,
        run_time: float = 0.1,
        output_bytes: int = 0,
    ) -> None:
        self.argv = [
            "--image-latency", str(image_latency), "--start-delay", str(start_delay),
            "--run-time", str(run_time), "--output-bytes", str(output_bytes),
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.openai_url = ""
        self.replicate_url = ""
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> FakeProviders:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fakes", *self.argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=64 << 20,
        )  # fmt: skip
        urls = await self._answer()
        self.openai_url, self.replicate_url = urls["openai"], urls["replicate"]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _answer(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the fake providers' process ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            return await self._answer()

    async def stats(self) -> dict[str, Any]:
        return await self._ask("stats")

    async def set_output_bytes(self, n: int) -> None:
        await self._ask(f"size {n}")

    async def set_latency(self, image: float, start_delay: float, run_time: float) -> None:
        await self._ask(f"latency {image} {start_delay} {run_time}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.fakes")
    parser.add_argument("--image-latency", type=float, default=0.0)
    parser.add_argument("--start-delay", type=float, default=0.0)
    parser.add_argument("--run-time", type=float, default=0.1)
    parser.add_argument("--output-bytes", type=int, default=0)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
