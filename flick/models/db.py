"""The database engine: one PostgresEngine whose pool is opened at start and closed at stop.

Piccolo finds the engine through `piccolo_conf.DB`; Flick decides the URL at run time (the embedded
server's socket, or DATABASE_URL), so the engine is created empty and configured before use.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from piccolo.engine.postgres import PostgresEngine

# Piccolo looks the conf module up by this name; point it at ours whatever the working directory.
os.environ.setdefault("PICCOLO_CONF", "flick.models.piccolo_conf")

DB = PostgresEngine(config={"dsn": os.environ.get("DATABASE_URL", "")}, log_queries=False)


def configure(url: str) -> None:
    DB.config["dsn"] = url


@asynccontextmanager
async def connection_pool(url: str, min_size: int, max_size: int) -> AsyncIterator[PostgresEngine]:
    configure(url)
    await DB.start_connection_pool(min_size=min_size, max_size=max_size)
    try:
        yield DB
    finally:
        await DB.close_connection_pool()
