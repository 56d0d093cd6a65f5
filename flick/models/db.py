"""The database engine: one PostgresEngine whose pool is opened at start and closed at stop.

Piccolo finds the engine through `piccolo_conf.DB`; Flick decides the URL at run time (the embedded
server's socket, or DATABASE_URL), so the engine is created empty and configured before use.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
from piccolo.engine.postgres import PostgresEngine

from flick.errors import ServiceError

# Piccolo looks the conf module up by this name; point it at ours whatever the working directory.
os.environ.setdefault("PICCOLO_CONF", "flick.models.piccolo_conf")

DB = PostgresEngine(config={"dsn": os.environ.get("DATABASE_URL", "")}, log_queries=False)


def configure(url: str) -> None:
    DB.config["dsn"] = url


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if not parts.scheme:
        return "DATABASE_URL (not a postgresql:// URL)"
    where = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{where}{port}{parts.path or ''}"


# What a wrong URL, a down server or a wrong password raise while connecting.
_UNUSABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError)


async def keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`): a second round trip after every statement, about as much of Flick's CPU as the
    statements' own sends (BENCHMARKS.md, Round 7), and nothing for it to undo. No code on this
    pool takes a session-level advisory lock, LISTENs, opens a cursor WITH HOLD or SETs a
    session setting: the leadership lock (telegram/leadership.py) and the LISTENs (work/
    signals.py) have connections of their own, and pgqueuer a pool of its own (work/engine.py).
    asyncpg still rolls back a transaction left open and drops listener callbacks before this
    is called (`Connection._reset`)."""


@asynccontextmanager
async def connection_pool(url: str, min_size: int, max_size: int) -> AsyncIterator[PostgresEngine]:
    configure(url)
    try:
        await DB.start_connection_pool(
            min_size=min_size, max_size=max_size, timeout=10, reset=keep_session
        )
    except _UNUSABLE as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ServiceError(
            f"cannot use the database at {describe(url)}: {reason or type(exc).__name__}",
            setting="DATABASE_URL",
        ) from None
    try:
        yield DB
    finally:
        await DB.close_connection_pool()


def pool() -> asyncpg.Pool:
    """The open pool: every query module runs on it."""
    return DB.pool
