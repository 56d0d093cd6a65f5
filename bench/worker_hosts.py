"""The `flick worker` processes of `bench.workers`: started with the gateway's settings (as on
hosts of their own, each with its own capped provider link), read line by line, stopped."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from bench.fakes import OPENAI_KEY, REPLICATE_TOKEN

READY = "worker ready"
HANDED_BACK = re.compile(r"generation (\d+): handed back")


@dataclass(frozen=True)
class Shared:
    """What every host of the bench reaches: the database, S3, the fake providers."""

    database_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str
    openai_url: str
    replicate_urls: list[str]  # one per host: each host's capped link
    tmp: Path


def worker_env(shared: Shared, host: int, k: int) -> dict[str, str]:
    """The gateway's settings, as a `flick worker` on another host would have them."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": shared.database_url,
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "4",
        "S3_ENDPOINT": shared.s3_endpoint,
        "S3_ACCESS_KEY": shared.s3_access_key,
        "S3_SECRET_KEY": shared.s3_secret_key,
        "S3_BUCKET": shared.bucket,
        "DATA_DIR": str(shared.tmp / f"worker{host}"),
        "IMAGE_PROVIDER": "openai",
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": shared.openai_url,
        "VIDEO_PROVIDER": "replicate",
        "REPLICATE_API_TOKEN": REPLICATE_TOKEN,
        "REPLICATE_BASE_URL": shared.replicate_urls[host],
        "AI_CONCURRENCY": str(k),
        "FACE_CHECK": "false",
        "LOG_LEVEL": "INFO",  # "worker ready" and each generation taken
    }


class WorkerChild:
    """`python -m flick worker`, its log (stderr) read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.ready = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if READY in line:
                self.ready.set()

    def taken(self) -> int:
        return sum(1 for ln in self.lines if ": taken at " in ln)

    def handed_back(self) -> dict[int, float]:
        """Generation id → when this worker handed it back (Unix time, from its log line's
        local-time stamp, to the millisecond)."""
        out: dict[int, float] = {}
        for line in self.lines:
            found = HANDED_BACK.search(line)
            if found is not None:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").astimezone()
                out[int(found.group(1))] = stamp.timestamp()
        return out

    def cpu(self) -> float:
        """CPU seconds the process used so far."""
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()  # SIGTERM: a clean stop, as the service manager does
            try:
                await asyncio.wait_for(self.proc.wait(), 40)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._reader


@asynccontextmanager
async def workers(
    n: int, shared: Shared, k: int, jobs: int = 0
) -> AsyncIterator[list[WorkerChild]]:
    """N workers, each ready (its queue listening) before the block runs; SIGTERM after.
    `jobs`: each runs at most that many generations at once (WORKER_MAX_GENERATIONS; 0: no
    bound)."""
    children: list[WorkerChild] = []
    command = ["flick", "worker"]
    try:
        for host in range(n):
            env = worker_env(shared, host, k) | {"WORKER_MAX_GENERATIONS": str(jobs)}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", *command,
                env=env, cwd=str(shared.tmp),  # no .env file of ours
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            children.append(WorkerChild(proc))
        for child in children:
            try:
                await asyncio.wait_for(child.ready.wait(), 120)
            except TimeoutError:
                print("\n".join(child.lines[-20:]), file=sys.stderr)
                raise RuntimeError("a worker did not start") from None
        yield children
    finally:
        await asyncio.gather(*(c.stop() for c in children))
