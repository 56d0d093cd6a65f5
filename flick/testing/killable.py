"""Flick as a real process the test can SIGKILL, then start again on the same database and bucket.

    flicks = Killable(base_config)                # in a fixture; `await flicks.close()` after
    first = await flicks.start(fresh=True, start={"uid": 7, "style": "hug"})
    gen_id = (await first.event("started"))["generation"]
    ...                                           # wait for the step (the fakes, the database)
    await first.kill()                            # SIGKILL, and wait until the process is gone
    second = await flicks.start()                 # resumes the generation
    await second.event("video")

Each process is forked from multiprocessing's forkserver, which imports Flick once for the whole
session (`flick.testing.flick_child` is preloaded): a start costs the engine's start-up, not two
seconds of imports. The child reports over a Unix socket (see flick_child for its events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from flick.testing import flick_child
from flick.testing.flick_child import ChildConfig
from flick.testing.waits import until

#: Generous: only turns a hang into a failure (a start is ~1 s on an idle machine).
LIMIT = 60.0

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["flick.testing.flick_child"])


class FlickProcess:
    """One child: its events as they arrive, and SIGKILL."""

    def __init__(self, process: multiprocessing.process.BaseProcess, log: Path) -> None:
        self.process = process
        self.log = log
        self.events: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["ev"] == name]

    async def event(self, name: str, limit: float = LIMIT) -> dict[str, Any]:
        """The first `name` event, once the child has sent it (fails if the child died)."""

        def arrived() -> bool:
            if self.named(name):
                return True
            if self.process.exitcode is not None:
                raise AssertionError(f"Flick exited ({self.process.exitcode}) before {name!r}; "
                                     f"its log: {self.log}\n{self.tail()}")  # fmt: skip
            return False

        await until(arrived, f"Flick (pid {self.pid}) reported {name!r}", limit)
        return self.named(name)[0]

    async def kill(self) -> None:
        """SIGKILL, and return once the process is gone (its sockets closed by the kernel)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        await until(lambda: self.process.exitcode is not None, f"pid {self.pid} died", LIMIT)
        assert self.process.exitcode == -signal.SIGKILL, self.process.exitcode

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


class Killable:
    """Starts FlickProcesses on one configuration; `close()` kills those still running."""

    def __init__(self, base: ChildConfig) -> None:
        self.base = base
        self.children: list[FlickProcess] = []
        # Unix socket paths are limited to ~100 bytes: a short directory of our own.
        self._dir = Path(tempfile.mkdtemp(prefix="flick-kill-"))
        self._numbers = 0

    async def start(self, **changes: Any) -> FlickProcess:
        """A new Flick process on the base configuration with `changes`; returns once it is up."""
        self._numbers += 1
        path = str(self._dir / f"{self._numbers}.sock")
        data_dir = Path(self.base.data_dir) / f"flick{self._numbers}"
        data_dir.mkdir(parents=True, exist_ok=True)
        cfg = replace(self.base, socket=path, data_dir=str(data_dir), **changes)
        process = _CONTEXT.Process(target=flick_child.main, args=(cfg.to_json(),), daemon=True)
        child = FlickProcess(process, data_dir / "flick.log")

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := await reader.readline():
                    if line.endswith(b"\n"):  # not a line cut short by the kill
                        child.events.append(json.loads(line))
            finally:
                writer.close()

        server = await asyncio.start_unix_server(connected, path)
        try:
            await asyncio.to_thread(process.start)
            self.children.append(child)
            await child.event("ready")
        finally:
            server.close()  # the one connection it serves stays open
        return child

    async def close(self) -> None:
        for child in self.children:
            if child.process.exitcode is None:
                await child.kill()
        shutil.rmtree(self._dir, ignore_errors=True)
