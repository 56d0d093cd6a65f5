"""A user's row written beside the actor's first reply, not before it (#19).

An actor's first load reads the user's row (no commit, so no wait for the WAL on the path of
the reply); the write that creates a new user (free credits and their ledger row, once) or
brings a known one up to date (name, language, last seen) runs beside it as a task. What may
run before that write lands: replies from the actor's memory alone (`answers_from_memory`).
Everything else about a new user waits for it (`landed`), and the actor never ends with the
write still running (`settle`). A write that fails is not lost work: the user's next load (a
handler retry, or the next actor) writes the row again, and until then nothing needed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from flick import events as ev
from flick.actors.admission import Admission
from flick.models import money

if TYPE_CHECKING:
    from loguru import Logger

#: Commands answered from the actor's memory alone: no write, and nothing of the user's row but
#: what a new account holds (its free credits, no session, the language Telegram gave).
FROM_MEMORY = frozenset({"start", "help", "balance"})


def answers_from_memory(message: object) -> bool:
    return isinstance(message, ev.Command) and message.name in FROM_MEMORY and not message.args


class RowWrite:
    def __init__(
        self,
        write: Callable[[], Coroutine[Any, Any, money.Account]],
        admission: Admission | None = None,
    ) -> None:
        self._write = write  # open_account for this user
        self._admission = admission
        self._task: asyncio.Task[money.Account] | None = None
        self._new = False  # the row did not exist at the first load, and may not yet
        # A new user's write that landed, once its task is let go, and the account to load if
        # the row was stored meanwhile after all (None: created as the actor built it).
        self._landed = False
        self._stored: money.Account | None = None

    def start(self, *, new: bool) -> None:
        """Write the row beside the reply; `new`: the first load found no row. Called inside
        the actor's slot: the write keeps a slot of its own until it ends (`Admission.extend`),
        so what admission lets in is bounded by the database work still running, not only by
        the replies."""
        self._new = new
        admission = self._admission
        if admission is None:
            task = asyncio.create_task(self._write())
        else:
            admission.extend()
            left = False

            def leave() -> None:
                nonlocal left
                if not left:
                    left = True
                    admission.leave()

            async def write() -> money.Account:
                try:
                    return await self._write()
                finally:
                    leave()  # before the task is done: whoever awaits it finds the slot free

            task = asyncio.create_task(write())
            # Also as a done callback: a task cancelled before its first step never runs
            # `finally`.
            task.add_done_callback(lambda _: leave())
        self._task = task
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[money.Account]) -> None:
        """A write that landed is let go, keeping only what `landed` needs: an idle user's
        actor would otherwise keep the finished task, its coroutine, context and account (#19:
        what an idle actor costs the heap). A failed one is kept, for `landed` to raise and
        `settle` to log."""
        if task is not self._task or task.cancelled() or task.exception() is not None:
            return
        self._task = None
        if self._new:
            account = task.result()
            self._landed = True
            self._stored = None if account.created else account

    @property
    def pending(self) -> bool:
        return self._task is not None and not self._task.done()

    async def landed(self) -> money.Account | None:
        """Wait for a new user's row (writing it again if the write beside the reply failed);
        the account written when it was stored meanwhile after all (the truth, to load), else
        None. Raises what the write raised: the handler's retry loads the user again, which
        writes the row on its path."""
        if not self._new:
            return None  # a known user's update needs nothing of it
        task, self._task = self._task, None
        if self._landed:
            stored = self._stored
            self.written()
            return stored
        account = await (task if task is not None else self._write())
        self._new = False
        return None if account.created else account

    def written(self) -> None:
        """The row is written: by a load on its own path, or by the write beside the reply."""
        self._new = self._landed = False
        self._stored = None

    async def settle(self, log: Logger) -> None:
        """Let a running write end (before a reload writes the row itself, or the actor ends).
        One that fails is logged: a new user's next message that needs the row writes it."""
        task, self._task = self._task, None
        if task is None:
            if self._landed:
                self.written()
            return
        try:
            await task
        except Exception as exc:  # noqa: BLE001 - written again when it is needed
            log.warning("user's row not written yet: {}", exc)
        else:
            self._new = False
