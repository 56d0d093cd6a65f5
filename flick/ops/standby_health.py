"""The health endpoint of a standby gateway: a `flick run` waiting for the gateway lock.

It has no engine, no storage and no Telegram yet, so it checks only what it needs to take over,
the database, and says that it stands by:

    200 {"database": "ok", "gateway": "standby"}

A 200 keeps an orchestrator's probe (Docker's HEALTHCHECK, a load balancer) from counting a
healthy standby as failed; the `gateway` note tells it from the active one, whose answer carries
`"gateway": "active"`. The database is reached on a connection of its own per probe: a standby
keeps none open while it waits (flick.telegram.leadership).
"""

from __future__ import annotations

import asyncpg

from flick.ops.health import HealthServer
from flick.ops.metrics import Metrics


def standby_health(address: str | None, database_url: str, metrics: Metrics) -> HealthServer:
    async def database() -> None:
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    return HealthServer(address, {"database": database}, metrics, notes={"gateway": "standby"})
