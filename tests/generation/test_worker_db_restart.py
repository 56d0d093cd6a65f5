"""PostgreSQL restarted while `flick worker` children poll for jobs and one of them renders
(flick.testing.db_outage's proxy stands between every process and the server, and drops every
connection for the outage): no worker gives up, nothing is paid or charged twice."""

from __future__ import annotations

import asyncio

from flick.testing.db_outage import DbProxy
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import HarnessFactory
from flick.testing.worker_checks import GATEWAY, GENERATION_LIMIT, HEARTBEAT, delivered
from flick.testing.workers import Workers

UID = 7811
OTHER = 7812
#: Longer than a heartbeat: the rendering job's heartbeat is stale when the database is back.
OUTAGE = HEARTBEAT + 2.0


async def test_workers_polling_through_a_database_restart_finish_the_video_and_take_new_ones(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_replicate: FakeReplicate,
    database_url: str,
) -> None:
    """Whoever runs the first video after the outage (its worker, or another that found its
    heartbeat stale) adopts its prediction; a video asked for after the outage is made too."""
    fake_replicate.run_time = 3600
    async with DbProxy.for_url(database_url) as proxy:
        through = proxy.url_for(database_url)
        h = await harness(**GATEWAY, database_url=through, retry_seconds=60)
        await asyncio.gather(
            workers.start("w1", DATABASE_URL=through), workers.start("w2", DATABASE_URL=through)
        )
        first = await gen.start_generation(h, UID)
        pid = await gen.wait_for_prediction(first, GENERATION_LIMIT)
        async with proxy.outage(OUTAGE):
            pass  # PostgreSQL is away while the first video renders and the workers poll
        for prediction in fake_replicate.predictions.values():
            prediction.run_time = 0  # it succeeds now
        fake_replicate.run_time = 0.1
        second = await gen.start_generation(h, OTHER)
        await delivered(h, gen, first, UID)
        await delivered(h, gen, second, OTHER)
        print(proxy.stats)

    assert [c.proc.returncode for c in workers.children.values()] == [None, None]  # none quit
    assert (await gen.generation(first))["prediction_id"] == pid
    assert fake_replicate.predictions_created == 2  # one each: nothing paid twice
    for uid, gen_id in ((UID, first), (OTHER, second)):
        row = await gen.generation(gen_id)
        assert (row["status"], row["refunded"], row["charged"]) == ("done", False, 1)
        assert await gen.ledger(uid) == [("free", 1, 1, None), ("generation", -1, 0, gen_id)]
        assert len(gen.videos(h, uid)) == 1
