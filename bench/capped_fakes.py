"""Fake providers for hosts with a bandwidth cap: one fake OpenAI, and one fake Replicate per host
whose videos leave at most `cap` bytes/s in all, however many downloads that host runs at once.

Why the cap sits in the fake and not in the kernel (tc in a network namespace,
flick.testing.netns): it needs no privilege, so the bench runs wherever the embedded
PostgreSQL does; and it caps exactly the transfer that dominates a generation's bytes, the
video coming from the provider. Each host (a `flick worker`, or the single `flick run`) is given
its own Replicate's URL, so the cap is per host, not per connection: more generations at once on
one host share its cap, as they share a network card. What it leaves uncapped: the worker's
upload to S3 and the gateway's download from S3 (all on 127.0.0.1).

Child side: `python -m bench.capped_fakes --hosts N ...` prints the URLs as one JSON line, then
exits at end of input (so it never outlives the benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from aiohttp import web

from bench.fakes import DIRECT_MODEL, OPENAI_KEY, REPLICATE_TOKEN, VIDEO_MODEL, SizedReplicate
from flick.testing.fake_http import Call
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import sample_mp4

CHUNK = 64 * 1024


class CappedReplicate(SizedReplicate):
    """Every succeeded output is `output_bytes` long and paced through one shared link of
    `cap` bytes/s: each chunk takes the link's next free slot, so concurrent downloads share it."""

    cap = 0.0  # bytes/s; 0: no cap
    _free_at = 0.0

    async def _output(self, call: Call) -> web.StreamResponse:
        prediction = self.predictions.get(call.request.match_info["id"])
        if (
            call.fault is not None
            or not self.output_bytes
            or prediction is None
            or prediction.status(time.monotonic()) != "succeeded"
        ):
            return await super()._output(call)
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = self.output_bytes
        await response.prepare(call.request)
        head = sample_mp4()
        zeros = bytes(CHUNK)
        try:
            await response.write(head)
            left = self.output_bytes - len(head)
            while left > 0:
                n = min(left, CHUNK)
                await self._through_link(n)
                await response.write(zeros[:n])
                left -= n
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    async def _through_link(self, n: int) -> None:
        if self.cap <= 0:
            return
        now = time.monotonic()
        start = max(now, self._free_at)
        self._free_at = start + n / self.cap
        await asyncio.sleep(self._free_at - now)


async def _serve(args: argparse.Namespace) -> None:
    async with AsyncExitStack() as stack:
        oa = FakeOpenAI(api_key=OPENAI_KEY, latency=args.image_latency, models={"gpt-image-1"})
        await stack.enter_async_context(oa)
        replicates = []
        for _ in range(args.hosts):
            rep = CappedReplicate(
                api_token=REPLICATE_TOKEN,
                start_delay=args.start_delay,
                run_time=args.run_time,
                models={VIDEO_MODEL, DIRECT_MODEL},
                require_schemas=True,
            )
            rep.output_bytes, rep.cap = args.output_bytes, args.cap
            replicates.append(await stack.enter_async_context(rep))
        urls = {"openai": oa.base_url, "replicate": [r.base_url for r in replicates]}
        print(json.dumps(urls), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.split()[:1] == [b"stats"]:
                violations = [str(v) for f in (oa, *replicates) for v in f.violations][:5]
                # Each host's video downloads: (started, finished), on the shared monotonic clock.
                outputs = [
                    [(q.started, q.finished) for q in r.requests if q.op == "output"]
                    for r in replicates
                ]
                answer = {"violations": violations, "outputs": outputs, "cpu": time.process_time()}
                print(json.dumps(answer), flush=True)


class CappedProviders:
    """Starts `python -m bench.capped_fakes` for `hosts` hosts; stopped (and reaped) on exit."""

    def __init__(
        self,
        hosts: int,
        *,
        image_latency: float,
        start_delay: float,
        run_time: float,
        output_bytes: int,
        cap: float,
    ) -> None:
        self.argv = [
            "--hosts", str(hosts), "--image-latency", str(image_latency),
            "--start-delay", str(start_delay), "--run-time", str(run_time),
            "--output-bytes", str(output_bytes), "--cap", str(cap),
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.openai_url = ""
        self.replicate_urls: list[str] = []

    async def __aenter__(self) -> CappedProviders:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.capped_fakes", *self.argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        urls = await self._answer()
        self.openai_url = str(urls["openai"])
        self.replicate_urls = [str(u) for u in urls["replicate"]]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def _answer(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the fake providers' process ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stats(self) -> dict[str, Any]:
        """violations: a few spec violations; outputs: per host, each video download's
        (started, finished) on time.monotonic(); cpu: the process's CPU seconds so far."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return await self._answer()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.capped_fakes")
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--image-latency", type=float, default=0.5)
    parser.add_argument("--start-delay", type=float, default=0.0)
    parser.add_argument("--run-time", type=float, default=2.0)
    parser.add_argument("--output-bytes", type=int, default=4 << 20)
    parser.add_argument("--cap", type=float, default=0.0, help="bytes/s per host (0: none)")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
