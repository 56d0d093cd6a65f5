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
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from flick import events as ev
from flick.models import money

if TYPE_CHECKING:
    from loguru import Logger

#: Commands answered from the actor's memory alone: no write, and nothing of the user's row but
#: what a new account holds (its free credits, no session, the language Telegram gave).
FROM_MEMORY = frozenset({"start", "help", "balance"})


def answers_from_memory(message: object) -> bool:
    return isinstance(message, ev.Command) and message.name in FROM_MEMORY and not message.args


class RowWrite:
    def __init__(self) -> None:
        self._task: asyncio.Task[money.Account] | None = None
        self._new = False  # the row did not exist at the first load, and may not yet

    def start(self, write: Coroutine[Any, Any, money.Account], *, new: bool) -> None:
        self._task = asyncio.create_task(write)
        self._new = new

    async def landed(self) -> money.Account | None:
        """Wait for a new user's row; the account written when it was stored meanwhile after
        all (a predecessor's write: the truth, to load), else None. Raises what the write
        raised: the handler's retry loads the user, and so writes the row, again."""
        task = self._task
        if task is None or not self._new:
            return None  # a known user's update needs nothing of it
        self._task = None
        account = await task
        self._new = False
        return None if account.created else account

    async def settle(self, log: Logger) -> None:
        """Let a running write end (before a reload writes the row itself, or the actor ends)."""
        task, self._task = self._task, None
        self._new = False
        if task is None:
            return
        try:
            await task
        except Exception as exc:  # noqa: BLE001 - the next load writes the row again
            log.warning("user's row not written yet: {}", exc)
