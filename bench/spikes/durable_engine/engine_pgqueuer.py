"""pgqueuer 1.x: an entrypoint per generation with a database-enforced concurrency_limit.

pgqueuer has no per-key ordering: jobs are taken by priority, then id, by any worker.
SPIKE_CHAIN=1 keeps a user's order in our own table instead: only each user's first job is
handed to pgqueuer, and a job's last act is to hand over the user's next one (its dedupe_key,
the job's own id, makes a repeated hand-over after a crash a no-op).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.errors import DuplicateJobError
from pgqueuer.models import Job
from spike_steps import Spec, Steps, dsn, enqueue_all, specs_from_argv

ENGINE = "pgqueuer"
steps = Steps(ENGINE)
POSITION_SQL = (
    "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'generation' AND status = 'queued' "
    "AND id < %(id)s"
)
# Flick would keep the engine's job id on the generation row; the spike finds it once.
ID_SQL = "SELECT id FROM pgqueuer WHERE convert_from(payload, 'UTF8')::json->>'job' = %(job)s"
CHAIN = bool(os.environ.get("SPIKE_CHAIN"))
NEXT_SQL = (
    "SELECT job, user_id, seq FROM spike_jobs WHERE user_id = $1 AND seq > $2 "
    "AND finished IS NULL ORDER BY seq LIMIT 1"
)


async def hand_over(queries: Queries, spec: Spec) -> None:
    try:
        payload = json.dumps(spec.dump()).encode()
        await queries.enqueue("generation", payload, dedupe_key=f"job-{spec.job}")
    except DuplicateJobError:
        pass  # handed over already, by a run the crash cut short


async def install() -> None:
    conn = await asyncpg.connect(dsn(ENGINE))
    await Queries(AsyncpgDriver(conn)).install()
    await conn.close()


async def enqueue(specs: list[Spec], one_by_one: bool) -> None:
    conn = await asyncpg.connect(dsn(ENGINE))
    queries = Queries(AsyncpgDriver(conn))

    heads: set[int] = set()

    async def one(spec: Spec) -> None:
        if CHAIN and spec.user in heads:
            return  # waits in our table for the user's previous job to hand it over
        heads.add(spec.user)
        await hand_over(queries, spec)

    await enqueue_all(ENGINE, specs, one_by_one, one)
    await conn.close()


async def worker() -> None:
    await steps.open()
    conn = await asyncpg.connect(dsn(ENGINE))
    pgq = PgQueuer(AsyncpgDriver(conn))
    chain = Queries(AsyncpgDriver(await asyncpg.connect(dsn(ENGINE))))

    @pgq.entrypoint("generation", concurrency_limit=0 if os.environ.get("SPIKE_OPEN") else 4)
    async def generation(job: Job) -> None:
        assert job.payload is not None
        spec = Spec(**json.loads(job.payload))
        await steps.run_as_queue_job(spec)
        if CHAIN:
            row = await chain.driver.fetch(NEXT_SQL, spec.user, spec.seq)
            if row:
                job_id, seq = str(row[0]["job"]), int(row[0]["seq"])  # type: ignore[call-overload]
                await hand_over(chain, Spec(job_id, spec.user, seq, spec.compose, spec.animate))

    await pgq.run(heartbeat_timeout=timedelta(seconds=6), dequeue_timeout=timedelta(seconds=1))


if __name__ == "__main__":
    if sys.argv[1] == "install":
        asyncio.run(install())
    elif sys.argv[1] == "enqueue":
        asyncio.run(enqueue(*specs_from_argv()))
    else:
        asyncio.run(worker())
