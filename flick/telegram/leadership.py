"""Which `flick run` holds the Telegram session: a PostgreSQL advisory lock, one per bot.

`async with Leadership(url, key) as lead:` returns once this process holds the session-level
lock `key` on a connection of its own, kept for as long as it leads; until then it logs once
"standby, waiting for the active gateway" and tries again every `retry` seconds. The lock goes
with its connection: a SIGKILLed gateway's connection closes, PostgreSQL releases the lock, and
a standby's next try wins.

Fencing. If the lock connection breaks (PostgreSQL restarted, the backend terminated, the
network cut) this process can no longer know that nobody else leads, so it must stop at once:
`lead.lost` is set and the callbacks given to `on_lost` run, synchronously, the moment the
loss is seen: a closed socket at once, a silent network within `probe_every + probe_timeout`
(a `SELECT 1` on the connection). PostgreSQL releases a silent holder's lock only after its TCP
keepalives give up (`_KEEPALIVE`: about 10 s), so the old leader has stopped before a standby
can win. A winner also waits `grace` before it returns, for the old leader to see a loss that
happened at the same instant (a terminated backend).

The lock connection is also an `Executor` (flick.telegram.session_store): the session's rows
are written through it, so a leader that lost the lock cannot write them any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Final

import asyncpg
from loguru import logger

from flick.errors import ServiceError
from flick.models.db import describe

#: Server-side TCP keepalives and timeout on the lock connection: a gateway cut off from
#: PostgreSQL loses the lock after about idle + interval × count seconds, well after it fenced
#: itself (probe_every + probe_timeout). Unix sockets ignore them.
_KEEPALIVE: Final = {
    "tcp_keepalives_idle": "4",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
    "application_name": "flick-gateway",
}
_BROKEN: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def lock_key(session: str) -> int:
    """The advisory lock's key for a bot's session: two bots may share a database."""
    return int.from_bytes(hashlib.sha256(f"flick:{session}".encode()).digest()[:8], signed=True)


class Leadership:
    def __init__(
        self,
        url: str,
        key: int,
        *,
        retry: float = 1.0,
        probe_every: float = 1.0,
        probe_timeout: float = 2.0,
        grace: float = 1.0,
        wait_for_database: bool = False,
    ) -> None:
        self._url = url
        self.key = key
        self.retry = retry
        self.probe_every = probe_every
        self.probe_timeout = probe_timeout
        self.grace = grace
        # False: a database that cannot be reached at the first try is a ServiceError, as at any
        # start (a wrong URL should not look like a standby). True after a loss: it may restart.
        self.wait_for_database = wait_for_database
        self.lost = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._io = asyncio.Lock()  # one statement at a time on the connection
        self._probe: asyncio.Task[None] | None = None
        self._on_lost: list[Callable[[], object]] = []
        self.waited = False  # another process held the lock when this one first asked

    @property
    def active(self) -> bool:
        """Whether this process holds the lock, as far as it can tell right now."""
        return self._conn is not None and not self._conn.is_closed() and not self.lost.is_set()

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Run `callback` (synchronously) the moment the lock is lost; at once if it already is."""
        self._on_lost.append(callback)
        if self.lost.is_set():
            callback()

    async def __aenter__(self) -> Leadership:
        await self.acquire()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()

    async def acquire(self) -> None:
        waiting = False
        while True:
            conn = await self._try_once()
            if conn is not None:
                break
            if not waiting:
                logger.info("standby, waiting for the active gateway")
                waiting = self.waited = True
            await asyncio.sleep(self.retry)
        self._conn = conn
        conn.add_termination_listener(self._terminated)
        self._probe = asyncio.create_task(self._probing(), name="flick-leadership-probe")
        await asyncio.sleep(self.grace)
        if not self.active:
            raise ConnectionError("lost the gateway lock while taking it")
        logger.info("this process is the active gateway")

    async def _try_once(self) -> asyncpg.Connection | None:
        try:
            conn = await asyncpg.connect(self._url, timeout=10, server_settings=_KEEPALIVE)
        except _BROKEN as exc:
            if not self.wait_for_database:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ServiceError(
                    f"cannot use the database at {describe(self._url)}: "
                    f"{reason or type(exc).__name__}",
                    setting="DATABASE_URL",
                ) from None
            logger.warning("gateway election: database unreachable ({})", type(exc).__name__)
            return None
        self.wait_for_database = True  # reached once: from now on an outage is waited out
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key, timeout=10):
                return conn
        except _BROKEN:
            pass
        conn.terminate()  # a standby keeps no connection open while it waits
        return None

    async def release(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._terminated)
            # Closing the connection ends the session, and the lock with it.
            with contextlib.suppress(*_BROKEN):
                await asyncio.wait_for(conn.close(), self.probe_timeout)
            if not conn.is_closed():
                conn.terminate()

    def _terminated(self, conn: object) -> None:
        self._lose("the database connection closed")

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost.set()
        logger.warning("lost the gateway lock ({}): this process stops serving Telegram", reason)
        for callback in self._on_lost:
            try:
                callback()
            except Exception:  # noqa: BLE001 - every fence must run
                logger.exception("a fencing callback failed")
        if self._conn is not None and not self._conn.is_closed():
            self._conn.terminate()

    async def _probing(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(self.probe_every)
            try:
                await self.fetchrow("SELECT 1")
            except ConnectionError:
                return
            except Exception as exc:  # noqa: BLE001 - a probe that cannot tell counts as lost
                self._lose(f"{type(exc).__name__} on the probe")
                return

    # The Executor of flick.telegram.session_store: statements on the lock connection.
    async def _run(self, method: str, query: str, *args: Any) -> Any:
        async with self._io:
            conn = self._conn
            if conn is not None and conn.is_closed():
                # asyncpg's termination listener is not the only word on it: a connection the
                # server ended can read as closed before (or without) the listener being called,
                # and a probe that only refused would then leave the loss unnoticed for good.
                self._lose("the database connection closed")
            if conn is None or not self.active:
                raise ConnectionError("not the active gateway")
            try:
                return await getattr(conn, method)(query, *args, timeout=self.probe_timeout)
            except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
                self._lose(f"{type(exc).__name__} on the lock connection")
                raise ConnectionError("not the active gateway") from None
            except (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError) as exc:
                self._lose(type(exc).__name__)
                raise ConnectionError("not the active gateway") from None

    async def execute(self, query: str, *args: Any) -> str:
        result: str = await self._run("execute", query, *args)
        return result

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        await self._run("executemany", query, list(args))

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._run("fetch", query, *args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._run("fetchrow", query, *args)
