"""A child process's stdout, line by line, for the tests that start and SIGKILL real processes
(flick.testing.elector, flick.testing.gateway_child): wait for a line, never for a time."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping

GUARD = 60.0  # seconds: a line awaited longer than this is a failure


def merged(with_stderr: bool) -> int | None:
    """What a child's stderr is: its stdout's pipe, or (None) the test's stderr."""
    return asyncio.subprocess.STDOUT if with_stderr else None


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def module(
        cls,
        name: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        with_stderr: bool = False,
    ) -> Child:
        """`python -m name args…`, its stdout read here, its stderr the test's (or read here
        too, `with_stderr`: `flick run` and `flick worker` log there)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", name, *args,
            stdout=asyncio.subprocess.PIPE, stderr=merged(with_stderr), env=env,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw_line in self.proc.stdout:
            async with self._changed:
                self.lines.append(raw_line.decode().rstrip("\n"))
                self._changed.notify_all()

    def find(self, *texts: str, after: int = 0) -> int | None:
        """The index of the first line from `after` on that contains one of `texts`."""
        return next(
            (i for i, ln in enumerate(self.lines) if i >= after and any(t in ln for t in texts)),
            None,
        )

    async def said(self, *texts: str, after: int = 0) -> int:
        """Wait for a line (from `after` on) containing one of `texts`; its index."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.find(*texts, after=after) is not None), GUARD
            )
        found = self.find(*texts, after=after)
        assert found is not None
        return found

    def pause(self) -> None:
        """SIGSTOP: the process stays, frozen (a zombie: no heartbeat, no work) until resumed."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: a paused process runs on from where it stopped, its timers long overdue."""
        self.proc.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await self._reader
