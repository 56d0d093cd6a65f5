"""kurigram's session storage in PostgreSQL (SESSION_STORE=database), so a standby gateway
takes over the bot's session and its update state where the active one left them.

What it keeps, and when it writes:
- the session row (DC, auth key sealed by flick.telegram.session_seal, user id, …): at once,
  on each change (rare: at sign-in);
- peers and usernames: at once, but only those new or changed since this process last wrote
  them (flick.telegram.known_peers: kurigram hands over every update's users; without it each
  update would cost a round trip);
- the update state (pts/qts/date/seq per channel): in memory, written at `save()`, exactly
  when kurigram's SQLite file commits it (at start, after catching up, at stop). The saved pts
  is then never ahead of what this process has handed to the engine, so a standby that takes
  over after a SIGKILL asks Telegram for everything since, and the engine's journal of handled
  updates drops what was already done: nothing lost, nothing done twice.

Every statement runs on an `Executor`: the elected gateway's own lock connection in production
(flick.telegram.leadership), so a gateway that lost the election cannot write any more.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from loguru import logger
from pyrogram.storage import Storage, UpdateState
from pyrogram.storage.sqlite_storage import get_input_peer

from flick.telegram.known_peers import KnownPeers
from flick.telegram.session_fields import UNSET, SessionFields, merged_state
from flick.telegram.session_seal import Seal

_FIELDS: Final = frozenset(
    ("dc_id", "server_address", "port", "api_id", "test_mode", "date", "user_id", "is_bot")
)


class Executor(Protocol):
    async def execute(self, query: str, *args: Any) -> str: ...
    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...


class DatabaseSessionStorage(SessionFields, Storage):
    VERSION: Final = 7  # kurigram's session schema these rows stand for
    USERNAME_TTL: Final = 8 * 60 * 60  # as kurigram's: an old username may belong to another

    def __init__(
        self,
        name: str,
        executor: Callable[[], Executor],
        seal: Seal,
        *,
        first_use: Callable[[Executor], Awaitable[object]] | None = None,
        create: bool = True,
    ) -> None:
        self.name = name
        # False: a session not in the database yet reads as empty and is not created (a one-off
        # command must not make the row: the first gateway would then skip its file's import).
        self._create = create
        self._db = executor  # called when used: the pool or lock connection opens after this
        self._seal = seal
        self._first_use = first_use  # fills a new session (flick.telegram.session_import)
        self._session: dict[str, Any] = {}
        self._auth_key: bytes | None = None
        self._states: dict[int, UpdateState] = {}
        self._unsaved: set[int] = set()
        self._deleted: set[int] = set()
        self._known = KnownPeers()

    async def open(self) -> None:
        db = self._db()
        row = await db.fetchrow("SELECT * FROM telegram_sessions WHERE name = $1", self.name)
        if row is None and not self._create:
            self._session, self._auth_key, self._states = {}, None, {}
            return
        if row is None:
            await db.execute(
                "INSERT INTO telegram_sessions (name, dc_id, server_address, port, date, version) "
                "VALUES ($1, 2, '149.154.167.51', 443, 0, $2) ON CONFLICT (name) DO NOTHING",
                self.name,
                self.VERSION,
            )
            if self._first_use is not None:
                await self._first_use(db)
            row = await db.fetchrow("SELECT * FROM telegram_sessions WHERE name = $1", self.name)
        self._session = {field: row[field] for field in _FIELDS}
        sealed = row["auth_key"]
        self._auth_key = self._seal.open(bytes(sealed)) if sealed is not None else None
        if sealed is not None and self._auth_key is None:
            # Sealed under another BOT_TOKEN: with no key kurigram signs in afresh. The update
            # state is the bot's, not the key's, so it stays.
            logger.warning("the saved Telegram session belongs to another BOT_TOKEN; signing in")
        rows = await db.fetch(
            "SELECT state_id, pts, qts, date, seq FROM telegram_update_states WHERE session = $1",
            self.name,
        )
        self._states = {r["state_id"]: UpdateState(*r.values()) for r in rows}
        self._unsaved.clear()
        self._deleted.clear()

    async def save(self) -> None:
        try:
            await self._field("date", int(time.time()))
            await self._flush_states()
        except ConnectionError as exc:  # fenced: the next active gateway owns the state now
            logger.warning("the Telegram update state was not saved: {}", exc)

    async def _flush_states(self) -> None:
        db = self._db()
        if self._deleted:
            await db.execute(
                "DELETE FROM telegram_update_states WHERE session = $1 AND state_id = ANY($2)",
                self.name,
                list(self._deleted),
            )
            self._deleted.clear()
        if self._unsaved:
            states = [self._states[i] for i in self._unsaved if i in self._states]
            await db.executemany(
                "INSERT INTO telegram_update_states (session, state_id, pts, qts, date, seq) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session, state_id) DO UPDATE SET "
                "pts = EXCLUDED.pts, qts = EXCLUDED.qts, date = EXCLUDED.date, seq = EXCLUDED.seq",
                [(self.name, s.id, s.pts, s.qts, s.date, s.seq) for s in states],
            )
            self._unsaved.clear()

    async def close(self) -> None:
        # Like kurigram's SQLite file: what `save()` did not write is dropped.
        self._known.forget()

    async def delete(self) -> None:
        db = self._db()
        for table in ("telegram_usernames", "telegram_peers", "telegram_update_states"):
            await db.execute(f"DELETE FROM {table} WHERE session = $1", self.name)
        await db.execute("DELETE FROM telegram_sessions WHERE name = $1", self.name)
        self._states.clear()
        self._known.forget()

    async def update_peers(self, peers: Iterable[tuple[int, int, str, str | None]]) -> None:
        fresh = self._known.fresh(peers)
        if not fresh:
            return
        try:
            await self._db().executemany(
                "INSERT INTO telegram_peers (session, peer_id, access_hash, type, phone_number, "
                "last_update_on) VALUES ($1, $2, $3, $4, $5, now()) "
                "ON CONFLICT (session, peer_id) DO UPDATE SET "
                "access_hash = EXCLUDED.access_hash, type = EXCLUDED.type, "
                "phone_number = EXCLUDED.phone_number, last_update_on = now()",
                [(self.name, *peer) for peer in fresh],
            )
        except BaseException:
            self._known.forget(peer[0] for peer in fresh)
            raise

    async def update_usernames(self, usernames: Iterable[tuple[int, list[str | None]]]) -> None:
        changed = self._known.fresh_usernames(usernames)
        if not changed:
            return
        pairs = [(peer_id, name) for peer_id, names in changed.items() for name in names]
        # One statement: the old names go and the new ones come together, or neither does.
        try:
            await self._db().execute(
                "WITH gone AS (DELETE FROM telegram_usernames WHERE session = $1 "
                "AND peer_id = ANY($2::bigint[])) "
                "INSERT INTO telegram_usernames (session, peer_id, username) "
                "SELECT $1, p, u FROM unnest($3::bigint[], $4::text[]) AS t(p, u) "
                "ON CONFLICT DO NOTHING",
                self.name,
                list(changed),
                [p for p, _ in pairs],
                [u for _, u in pairs],
            )
        except BaseException:
            self._known.forget(changed)
            raise

    async def get_update_states(self, ids: int | Iterable[int] | None = None) -> list[UpdateState]:
        if ids is None:
            states = list(self._states.values())
        else:
            wanted = (ids,) if isinstance(ids, int) else tuple(ids)
            states = [self._states[i] for i in wanted if i in self._states]
        # kurigram's order (SQLite's ORDER BY date: no date first).
        return sorted(states, key=lambda s: (s.date is not None, s.date or 0))

    async def set_update_state(self, update_state: UpdateState | Iterable[UpdateState]) -> None:
        states = [update_state] if isinstance(update_state, UpdateState) else update_state
        for new in states:
            self._states[new.id] = merged_state(new, self._states.get(new.id))
            self._unsaved.add(new.id)
            self._deleted.discard(new.id)

    async def delete_update_state(self, state_id: int | Iterable[int]) -> None:
        for i in (state_id,) if isinstance(state_id, int) else tuple(state_id):
            self._states.pop(i, None)
            self._unsaved.discard(i)
            self._deleted.add(i)

    async def get_peer_by_id(self, peer_id: int) -> Any:
        known = self._known.get(peer_id)
        if known is not None:
            return get_input_peer(peer_id, *known)
        row = await self._db().fetchrow(
            "SELECT peer_id, access_hash, type FROM telegram_peers "
            "WHERE session = $1 AND peer_id = $2",
            self.name,
            peer_id,
        )
        if row is None:
            raise KeyError(f"ID not found: {peer_id}")
        return get_input_peer(*row.values())

    async def get_peer_by_username(self, username: str) -> Any:
        row = await self._db().fetchrow(
            "SELECT p.peer_id, p.access_hash, p.type, extract(epoch FROM p.last_update_on) AS seen "
            "FROM telegram_peers p JOIN telegram_usernames u "
            "ON u.session = p.session AND u.peer_id = p.peer_id "
            "WHERE p.session = $1 AND u.username = $2 ORDER BY p.last_update_on DESC LIMIT 1",
            self.name,
            username,
        )
        if row is None:
            raise KeyError(f"Username not found: {username}")
        if abs(time.time() - float(row["seen"])) > self.USERNAME_TTL:
            raise KeyError(f"Username expired: {username}")
        return get_input_peer(row["peer_id"], row["access_hash"], row["type"])

    async def get_peer_by_phone_number(self, phone_number: str) -> Any:
        row = await self._db().fetchrow(
            "SELECT peer_id, access_hash, type FROM telegram_peers "
            "WHERE session = $1 AND phone_number = $2",
            self.name,
            phone_number,
        )
        if row is None:
            raise KeyError(f"Phone number not found: {phone_number}")
        return get_input_peer(*row.values())

    async def _field(self, field: str, value: Any = UNSET) -> Any:
        """Read (no value) or write one column of the session row, as kurigram's accessors do."""
        assert field in _FIELDS  # the column name goes into the statement
        if value is UNSET:
            return self._session.get(field)
        await self._db().execute(
            f"UPDATE telegram_sessions SET {field} = $2 WHERE name = $1",
            self.name,
            value,
        )
        self._session[field] = value
        return None

    # kurigram's accessors besides SessionFields' (flick.telegram.session_fields).
    async def auth_key(self, value: Any = UNSET) -> Any:
        if value is UNSET:
            return self._auth_key
        sealed = None if value is None else self._seal.seal(bytes(value))
        await self._db().execute(
            "UPDATE telegram_sessions SET auth_key = $2 WHERE name = $1", self.name, sealed
        )
        self._auth_key = None if value is None else bytes(value)
        return None

    async def version(self, value: Any = UNSET) -> Any:
        return self.VERSION if value is UNSET else None

    def __repr__(self) -> str:  # never the key
        return f"DatabaseSessionStorage({self.name!r})"
