"""Generations on the durable queue (pgqueuer): a charge and its job are one transaction, a
refund withdraws a job still waiting, and a database restart does not stall the queue while a
long generation renders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from flick.models import generation_jobs, money
from flick.models.db import pool
from flick.testing.db_outage import DbProxy
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import HarnessFactory

UID = 7301
OTHER = 7302


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[DbProxy]:
    async with DbProxy.for_url(database_url) as running:
        yield running


async def jobs() -> list[dict[str, Any]]:
    rows = await pool().fetch(
        "SELECT entrypoint, status::text, dedupe_key, convert_from(payload, 'UTF8') AS payload "
        "FROM pgqueuer ORDER BY id"
    )
    return [dict(r) for r in rows]


async def test_a_charge_and_its_job_are_written_together_and_a_refund_withdraws_a_waiting_job(
    harness: HarnessFactory, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    fake_replicate.run_time = 3600  # the first user's prediction holds the only AI seat
    h = await harness(ai_concurrency=1, pipeline=replace(gen.FAST, animate_budget=300.0))
    first = await gen.start_generation(h, UID)
    await gen.wait_for_prediction(first)
    second = await gen.start_generation(h, OTHER)

    async def waiting() -> bool:
        return await generation_jobs.queued_in_order() == [second]

    await gen.wait_for(waiting, "the second generation waits in the queue")
    queued = [j for j in await jobs() if j["status"] == "queued"]
    # The job names the generation and nothing else: price, style and user come from its row.
    assert queued == [
        {
            "entrypoint": "generate",
            "status": "queued",
            "dedupe_key": f"generate:{second}",
            "payload": f'{{"g": {second}}}',
        }
    ]
    refund = await money.refund_generation(second, "cancel", "canceled", "by the user")
    assert refund is not None
    assert await generation_jobs.queued_in_order() == []  # it holds no place any more
    ledger = await gen.ledger(OTHER)
    assert [(e[0], e[1], e[3]) for e in ledger] == [
        ("free", ledger[0][1], None),
        ("generation", -1, second),
        ("refund", 1, second),
    ]
    assert fake_replicate.predictions_created == 1


async def test_no_job_without_its_charge_when_the_balance_is_too_low(
    harness: HarnessFactory, gen: GenerationTools
) -> None:
    h = await harness(free_credits=0)
    await h.command(UID, "start")  # the account, with nothing to spend
    await h.settle()
    started = await money.start_generation(
        UID,
        "hug",
        ("photos/a.jpg", "photos/b.jpg"),
        request_key="low",
        image_provider="openai",
        video_provider="replicate",
    )
    assert started.record is None
    assert await jobs() == []


async def test_the_queue_takes_new_generations_after_a_database_restart_while_one_renders(
    harness: HarnessFactory,
    gen: GenerationTools,
    fake_replicate: FakeReplicate,
    proxy: DbProxy,
    database_url: str,
) -> None:
    """The queue manager waits out the outage instead of failing: a failing one would take no
    new job here until every running generation had ended."""
    fake_replicate.run_time = 3600
    h = await harness(
        database_url=proxy.url_for(database_url),
        retry_seconds=60,
        # The first video renders through the whole test, however slow the machine.
        pipeline=replace(gen.FAST, animate_budget=300.0),
    )
    first = await gen.start_generation(h, UID)
    await gen.wait_for_prediction(first)
    async with proxy.outage(3.0):
        pass  # the database restarts while the first video renders
    fake_replicate.run_time = 0.1
    await gen.start_generation(h, OTHER)

    async def other_delivered() -> bool:
        return len(gen.videos(h, OTHER)) == 1

    await gen.wait_for(other_delivered, "a generation started after the restart was delivered")
    assert gen.videos(h, UID) == []  # the first one still renders
    for prediction in fake_replicate.predictions.values():
        prediction.run_time = 0.1
    await h.settle()
    assert len(gen.videos(h, UID)) == 1 and len(gen.videos(h, OTHER)) == 1
    assert fake_replicate.predictions_created == 2  # one each: nothing paid twice
    for uid in (UID, OTHER):
        gen_id = await gen.generation_id(uid)
        assert [e[0] for e in await gen.ledger(uid)] == ["free", "generation"], gen_id


async def test_on_the_embedded_database_a_killed_runs_picked_jobs_go_back_to_the_queue(
    harness: HarnessFactory, gen: GenerationTools
) -> None:
    """No other process can reach the embedded database, so a job still picked at start was
    picked by a run that was killed: it is queued again at once (`reclaim_orphans`, called by
    `flick run` on the embedded database), not after its heartbeat timeout."""
    h = await harness(gateway_generates=False)  # nothing here takes a generate job
    first = await gen.start_generation(h, UID)
    second = await gen.start_generation(h, OTHER)
    await pool().execute(  # as a SIGKILLed queue manager leaves its job
        "UPDATE pgqueuer SET status = 'picked', slot = 0, "
        "queue_manager_id = '00000000-0000-0000-0000-000000000001' WHERE dedupe_key = $1",
        f"generate:{first}",
    )
    assert await generation_jobs.queued_in_order() == [second]
    assert await generation_jobs.reclaim_orphans() == 1
    assert await generation_jobs.queued_in_order() == [first, second]  # in its old place
