"""The bot's Telegram session in a private SQLite file (SESSION_STORE=file, the default):
kurigram's own storage, made private, lighter per update, and readable beside the gateway."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyrogram.storage import SQLiteStorage, UpdateState

from flick.private_files import create_private
from flick.telegram.known_peers import KnownPeers
from flick.telegram.session_fields import merged_state


class PrivateSessionStorage(SQLiteStorage):
    """kurigram's session file, 0600 from its first byte whatever the umask.

    It holds the bot's authorization key: whoever reads it can act as the bot. SQLite would
    create it with 0644 filtered by the umask (Docker's 022 leaves it world-readable), so the
    file is created here first; SQLite gives its journal the database file's mode.

    What kurigram writes with every update is kept in memory until it is needed:
    - peers and usernames are written only when new or changed (flick.telegram.known_peers);
    - the update state (pts, qts, date, seq) is merged in memory and written when kurigram reads
      it or saves. kurigram's own storage writes it with each update, but commits only at
      `save()`: what a SIGKILL loses is the same.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known = KnownPeers()
        self._states: dict[int, UpdateState] = {}  # set since they were last written

    async def set_update_state(self, update_state: UpdateState | Iterable[UpdateState]) -> None:
        given = [update_state] if isinstance(update_state, UpdateState) else update_state
        for new in given:
            self._states[new.id] = merged_state(new, self._states.get(new.id))

    async def get_update_states(self, ids: int | Iterable[int] | None = None) -> list[UpdateState]:
        await self._write_states()
        states: list[UpdateState] = await super().get_update_states(ids)
        return states

    async def delete_update_state(self, state_id: int | Iterable[int]) -> None:
        await self._write_states()
        await super().delete_update_state(state_id)  # type: ignore[no-untyped-call]

    async def save(self) -> None:
        await self._write_states()
        await super().save()  # type: ignore[no-untyped-call]

    async def _write_states(self) -> None:
        if self._states:
            states, self._states = list(self._states.values()), {}
            await super().set_update_state(states)

    async def update_peers(self, peers: Iterable[tuple[int, int, str, str | None]]) -> None:
        fresh = self._known.fresh(peers)
        if fresh:
            try:
                await super().update_peers(fresh)
            except BaseException:
                self._known.forget(peer[0] for peer in fresh)
                raise

    async def update_usernames(self, usernames: Iterable[tuple[int, list[str | None]]]) -> None:
        changed = self._known.fresh_usernames(usernames)
        if changed:
            try:
                await super().update_usernames(
                    [(peer_id, list(names)) for peer_id, names in changed.items()]
                )
            except BaseException:
                self._known.forget(changed)
                raise

    async def close(self) -> None:
        # As kurigram's: what `save()` did not write is dropped.
        self._known.forget()
        self._states.clear()
        await super().close()  # type: ignore[no-untyped-call]

    async def delete(self) -> None:
        self._known.forget()
        self._states.clear()
        await super().delete()  # type: ignore[no-untyped-call]

    async def open(self) -> None:
        # Blocking, like the sqlite3 calls of kurigram's own open(): once, at start.
        _create_if_missing(Path(self.database))
        await super().open()  # type: ignore[no-untyped-call]

    async def update(self) -> None:
        # kurigram migrates an existing file; the empty one made above is a new session.
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'version'").fetchone()
        if found is None:
            await self.create()  # type: ignore[no-untyped-call]
        else:
            await super().update()  # type: ignore[no-untyped-call]


class BorrowedSessionFile(SQLiteStorage):
    """The session file opened read-only, for a one-off command (GuestSession on top) while the
    gateway may be using it: kurigram's own open() would migrate and VACUUM it, rewriting the
    file, and wait for or hold locks the gateway's saves need."""

    async def open(self) -> None:
        # Blocking, like the sqlite3 calls of kurigram's own open(): once, at start.
        self.conn = sqlite3.connect(
            f"file:{self.database}?mode=ro", uri=True, timeout=1, check_same_thread=False
        )


def _create_if_missing(path: Path) -> None:
    if not path.is_file():
        os.close(create_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))


__all__ = ["BorrowedSessionFile", "PrivateSessionStorage"]
