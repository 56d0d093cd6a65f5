"""What every engine's spike shares: a database per engine, and the steps of a fake generation.

A generation is compose (a paid AI call) -> animate (a paid AI call) -> deliver. Every AI call
goes through `Steps.ai`, which counts the calls in flight in one PostgreSQL row (so the peak is
global across processes) and logs each paid call, so a step that runs twice shows as two rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

SERVER = "postgresql://postgres@127.0.0.1:5432"


def dsn(engine: str) -> str:
    return f"{SERVER}/spike_{engine}"


SPIKE_SQL = """
CREATE TABLE IF NOT EXISTS spike_meter (
    id int PRIMARY KEY, running int NOT NULL, peak int NOT NULL);
INSERT INTO spike_meter VALUES (1, 0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS spike_calls (
    id bigserial PRIMARY KEY, job text NOT NULL, step text NOT NULL, pid int NOT NULL,
    started timestamptz NOT NULL DEFAULT clock_timestamp(), ended timestamptz);
-- the DBOS watchdog's heartbeats
CREATE TABLE IF NOT EXISTS spike_executors (id text PRIMARY KEY, beat timestamptz NOT NULL);
-- what a job queue's handler checks before a paid step, as Flick's generation record does
CREATE TABLE IF NOT EXISTS spike_steps (job text, step text, PRIMARY KEY (job, step));
CREATE TABLE IF NOT EXISTS spike_jobs (
    job text PRIMARY KEY, user_id int NOT NULL, seq int NOT NULL,
    enqueued timestamptz NOT NULL DEFAULT clock_timestamp(),
    started timestamptz, finished timestamptz, pid int, runs int NOT NULL DEFAULT 0);
"""


def reset_database(engine: str) -> None:
    """A fresh database for one engine, with the spike's own tables."""
    name = sql.Identifier(f"spike_{engine}")
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (f"spike_{engine}",),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    with psycopg.connect(dsn(engine), autocommit=True) as conn:
        conn.execute(SPIKE_SQL)  # several statements: sent as one simple query


@dataclass(frozen=True)
class Spec:
    job: str
    user: int
    seq: int
    compose: float  # seconds the paid compose call takes (0: no call)
    animate: float  # seconds the paid animate call takes (0: no call)

    def dump(self) -> dict[str, Any]:
        return asdict(self)


Conn = psycopg.AsyncConnection[tuple[object, ...]]


async def register(conn: Conn, spec: Spec) -> None:
    """The spike's own row for a job, stamped with the time it is handed to the engine."""
    await conn.execute(
        "INSERT INTO spike_jobs (job, user_id, seq) VALUES (%s, %s, %s)",
        (spec.job, spec.user, spec.seq),
    )


async def wait_finished(conn: Conn, job: str) -> None:
    while True:
        cur = await conn.execute(
            "SELECT finished IS NOT NULL FROM spike_jobs WHERE job = %s", (job,)
        )
        row = await cur.fetchone()
        if row is not None and row[0]:
            return
        await asyncio.sleep(0.002)


async def enqueue_all(
    engine: str, specs: list[Spec], one_by_one: bool, enqueue: Callable[[Spec], Awaitable[None]]
) -> None:
    """Hand the jobs to the engine, each stamped just before; one by one: wait for each."""
    async with await psycopg.AsyncConnection.connect(dsn(engine), autocommit=True) as conn:
        for spec in specs:
            await register(conn, spec)
            await enqueue(spec)
            if one_by_one:
                await wait_finished(conn, spec.job)


def specs_from_argv() -> tuple[list[Spec], bool]:
    raw = json.loads(Path(sys.argv[2]).read_text())
    return [Spec(**s) for s in raw], "--one-by-one" in sys.argv


class Steps:
    def __init__(self, engine: str) -> None:
        self.pool = AsyncConnectionPool(dsn(engine), open=False, min_size=2, max_size=12)
        self.pid = os.getpid()

    async def open(self) -> None:
        await self.pool.open()

    async def start(self, spec: Spec) -> None:
        async with self.pool.connection() as c:
            await c.execute(
                "UPDATE spike_jobs SET started = COALESCE(started, clock_timestamp()), "
                "runs = runs + 1 WHERE job = %s",
                (spec.job,),
            )

    async def ai(self, spec: Spec, step: str, seconds: float) -> None:
        """One paid AI call: counted in flight globally, logged as paid."""
        if seconds <= 0:
            return
        async with self.pool.connection() as c:
            await c.execute(
                "UPDATE spike_meter SET running = running + 1, "
                "peak = GREATEST(peak, running + 1) WHERE id = 1"
            )
            cur = await c.execute(
                "INSERT INTO spike_calls (job, step, pid) VALUES (%s, %s, %s) RETURNING id",
                (spec.job, step, self.pid),
            )
            row = await cur.fetchone()
            assert row is not None
        await asyncio.sleep(seconds)
        async with self.pool.connection() as c:
            await c.execute("UPDATE spike_meter SET running = running - 1 WHERE id = 1")
            await c.execute(
                "UPDATE spike_calls SET ended = clock_timestamp() WHERE id = %s", (row[0],)
            )

    async def done(self, spec: Spec, step: str) -> bool:
        async with self.pool.connection() as c:
            cur = await c.execute(
                "SELECT 1 FROM spike_steps WHERE job = %s AND step = %s", (spec.job, step)
            )
            return await cur.fetchone() is not None

    async def mark(self, spec: Spec, step: str) -> None:
        async with self.pool.connection() as c:
            await c.execute(
                "INSERT INTO spike_steps VALUES (%s, %s) ON CONFLICT DO NOTHING", (spec.job, step)
            )

    async def deliver(self, spec: Spec) -> None:
        async with self.pool.connection() as c:
            await c.execute(
                "UPDATE spike_jobs SET finished = clock_timestamp(), pid = %s WHERE job = %s",
                (self.pid, spec.job),
            )

    async def run_as_queue_job(self, spec: Spec) -> None:
        """A job queue's handler: the whole job runs again after a crash, so each paid step
        is skipped when the record says it is done (what Flick's record and advance() give)."""
        await self.start(spec)
        for step, seconds in (("compose", spec.compose), ("animate", spec.animate)):
            if await self.done(spec, step):
                continue
            await self.ai(spec, step, seconds)
            await self.mark(spec, step)
        await self.deliver(spec)
