"""DBOS Transact 3.x: a workflow per generation, each provider call a checkpointed step, on a
queue with a global concurrency limit and one partition (concurrency 1) per user.

SPIKE_WATCHDOG=1 adds what DBOS leaves to its Conductor service when self-hosted: noticing a
dead executor and handing its workflows back to the queue.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import psycopg
from dbos import DBOS, DBOSClient
from spike_steps import Spec, Steps, dsn, enqueue_all, specs_from_argv

ENGINE = "dbos"
VERSION = "spike-1"
steps = Steps(ENGINE)
POSITION_SQL = (
    "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = 'gen' AND status = 'ENQUEUED' "
    "AND created_at < (SELECT created_at FROM dbos.workflow_status WHERE workflow_uuid = %(id)s)"
)
ID_SQL = "SELECT %(job)s"  # the workflow id is ours to choose (the generation's)


def config(executor: str) -> Any:
    return {
        "name": "flickspike",
        "system_database_url": dsn(ENGINE),
        "application_version": VERSION,
        "executor_id": executor,
    }


@DBOS.step()
async def start_step(spec: dict[str, Any]) -> None:
    await steps.start(Spec(**spec))


@DBOS.step()
async def compose_step(spec: dict[str, Any]) -> None:
    await steps.ai(Spec(**spec), "compose", spec["compose"])


@DBOS.step()
async def animate_step(spec: dict[str, Any]) -> None:
    await steps.ai(Spec(**spec), "animate", spec["animate"])


@DBOS.step()
async def deliver_step(spec: dict[str, Any]) -> None:
    await steps.deliver(Spec(**spec))


@DBOS.workflow(name="generation")
async def generation(spec: dict[str, Any]) -> None:
    # No check of our own before a paid step: what is measured is DBOS's checkpointing.
    await start_step(spec)
    await compose_step(spec)
    await animate_step(spec)
    await deliver_step(spec)


async def install() -> None:
    DBOS(config=config("installer"))
    DBOS.launch()  # runs DBOS's own migrations of its `dbos` schema
    if os.environ.get("SPIKE_OPEN"):  # the engine's own cost: no global bound
        await DBOS.register_queue_async(
            "gen", worker_concurrency=10, partition_concurrency=1, polling_interval_sec=0.1
        )
    else:
        await DBOS.register_queue_async(
            "gen", global_concurrency=4, partition_concurrency=1, polling_interval_sec=0.1
        )
    DBOS.destroy()


async def enqueue(specs: list[Spec], one_by_one: bool) -> None:
    client = DBOSClient(system_database_url=dsn(ENGINE), application_name="flickspike")

    async def one(spec: Spec) -> None:
        await client.enqueue_async(
            {
                "queue_name": "gen",
                "workflow_name": "generation",
                "workflow_id": spec.job,
                "queue_partition_key": f"user-{spec.user}",
                "app_version": VERSION,
            },
            spec.dump(),
        )

    await enqueue_all(ENGINE, specs, one_by_one, one)
    client.destroy()


async def watchdog(me: str) -> None:
    """Each worker beats every second; whoever finds a beat older than 6 s recovers that
    executor's PENDING workflows (row-locked, so one worker does it)."""
    async with await psycopg.AsyncConnection.connect(dsn(ENGINE), autocommit=True) as conn:
        while True:
            await conn.execute(
                "INSERT INTO spike_executors VALUES (%s, clock_timestamp()) "
                "ON CONFLICT (id) DO UPDATE SET beat = clock_timestamp()",
                (me,),
            )
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT id FROM spike_executors "
                    "WHERE beat < clock_timestamp() - interval '6 s' FOR UPDATE SKIP LOCKED"
                )
                dead = [str(r[0]) for r in await cur.fetchall()]
                if dead:
                    # Internal in 3.4.0 (the 2.x admin API's recovery endpoint is gone), and
                    # idempotent: it re-enqueues only workflows still PENDING on `dead`.
                    await asyncio.to_thread(DBOS._recover_pending_workflows, dead)
                    await conn.execute("DELETE FROM spike_executors WHERE id = ANY(%s)", (dead,))
            await asyncio.sleep(1)


async def worker() -> None:
    await steps.open()
    me = os.environ.get("SPIKE_WORKER", "local")
    DBOS(config=config(me))
    DBOS.launch()  # from inside the running loop: async workflows run on this loop
    if os.environ.get("SPIKE_WATCHDOG"):
        await watchdog(me)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[1] == "install":
        asyncio.run(install())
    elif sys.argv[1] == "enqueue":
        asyncio.run(enqueue(*specs_from_argv()))
    else:
        asyncio.run(worker())
