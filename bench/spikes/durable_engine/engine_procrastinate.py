"""procrastinate 3.x: a task per generation, the user's id as the job's `lock`.

procrastinate has no concurrency limit shared by all workers: `concurrency` is per worker.
"""

from __future__ import annotations

import asyncio
import os
import sys

import procrastinate
from spike_steps import Spec, Steps, dsn, enqueue_all, specs_from_argv

ENGINE = "procrastinate"
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn(ENGINE)))
steps = Steps(ENGINE)
POSITION_SQL = (
    "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'gen' AND status = 'todo' "
    "AND id < %(id)s"
)
# Flick would keep the engine's job id on the generation row; the spike finds it once.
ID_SQL = "SELECT id FROM procrastinate_jobs WHERE args->>'job' = %(job)s"


@app.task(name="generation", queue="gen")
async def generation(job: str, user: int, seq: int, compose: float, animate: float) -> None:
    await steps.run_as_queue_job(Spec(job, user, seq, compose, animate))


async def install() -> None:
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def enqueue(specs: list[Spec], one_by_one: bool) -> None:
    async def one(spec: Spec) -> None:
        await generation.configure(lock=f"user-{spec.user}").defer_async(**spec.dump())

    async with app.open_async():
        await enqueue_all(ENGINE, specs, one_by_one, one)


async def retry_stalled() -> None:
    """procrastinate finds stalled jobs (their worker's heartbeat is old) but leaves retrying
    them to the application (its docs: from a periodic task). Here: every 2 s."""
    while True:
        await asyncio.sleep(2)
        for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=6):
            await app.job_manager.retry_job(job)


async def worker() -> None:
    await steps.open()
    async with app.open_async():
        retrying = asyncio.create_task(retry_stalled())
        await app.run_worker_async(
            queues=["gen"],
            concurrency=10 if os.environ.get("SPIKE_OPEN") else 4,
            update_heartbeat_interval=2,
            stalled_worker_timeout=6,
        )
        retrying.cancel()


if __name__ == "__main__":
    if sys.argv[1] == "install":
        asyncio.run(install())
    elif sys.argv[1] == "enqueue":
        asyncio.run(enqueue(*specs_from_argv()))
    else:
        asyncio.run(worker())
