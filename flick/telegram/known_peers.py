"""What a session storage last wrote for each peer, so that an update from a known user writes
nothing (both of Flick's session storages: the SQLite file and the rows in PostgreSQL).

kurigram hands every update's users and chats to `Storage.update_peers` (and their usernames to
`update_usernames`), although nearly all of them are the ones it already stored. kurigram's own
SQLite storage writes them all again, every time: 5.6 % of Flick's CPU at saturation
(`bench.engine --profile`, BENCHMARKS.md Round 7), and more when updates come in faster than
they are answered. Only a peer new to this process, changed, or not written for `refresh`
seconds is written: the rewrite keeps the stored row's age under kurigram's username TTL
(8 hours), past which it would stop resolving the peer's username.

Bounded: past `limit` peers the memory is forgotten at once (each known peer is then written
once more), rather than growing with every user the bot ever saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

Peer = tuple[int, int, str, str | None]  # (id, access hash, type, phone), as kurigram gives it
Usernames = tuple[int, list[str | None]]

REFRESH: Final = 3600.0
LIMIT: Final = 200_000  # about 40 MB of memory at most


class KnownPeers:
    def __init__(
        self,
        *,
        refresh: float = REFRESH,
        limit: int = LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh = refresh
        self.limit = limit
        self._clock = clock
        self._peers: dict[int, tuple[tuple[int, str, str | None], float]] = {}
        self._usernames: dict[int, tuple[str, ...]] = {}

    def fresh(self, peers: Iterable[Peer]) -> list[Peer]:
        """The peers to write: those not written as they are now within `refresh` seconds.
        Counted as written: call `forget()` if the write then fails."""
        now = self._clock()
        if len(self._peers) > self.limit:
            self._peers.clear()
        out = []
        for peer_id, access_hash, kind, phone in peers:
            known = self._peers.get(peer_id)
            value = (access_hash, kind, phone)
            if known is None or known[0] != value or now - known[1] > self.refresh:
                out.append((peer_id, access_hash, kind, phone))
                self._peers[peer_id] = (value, now)
        return out

    def get(self, peer_id: int) -> tuple[int, str] | None:
        """A peer's access hash and type, as last written, if this process wrote it."""
        known = self._peers.get(peer_id)
        return None if known is None else known[0][:2]

    def fresh_usernames(self, usernames: Iterable[Usernames]) -> dict[int, tuple[str, ...]]:
        """Each peer whose names differ from those written last, with its names (None left out).
        Counted as written: call `forget()` if the write then fails."""
        if len(self._usernames) > self.limit:
            self._usernames.clear()
        changed = {
            peer_id: names
            for peer_id, given in usernames
            if self._usernames.get(peer_id) != (names := tuple(n for n in given if n is not None))
        }
        self._usernames.update(changed)
        return changed

    def forget(self, peer_ids: Iterable[int] | None = None) -> None:
        """A write failed, or the session was deleted (None: all): write these again."""
        if peer_ids is None:
            self._peers.clear()
            self._usernames.clear()
            return
        for peer_id in peer_ids:
            self._peers.pop(peer_id, None)
            self._usernames.pop(peer_id, None)
