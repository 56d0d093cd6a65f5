"""Restarts: a new engine on the same database picks every user up where they were, and finishes
(or refunds) the generations the old one left running, charging each exactly once.

The video provider here is a CountingVideo the test owns: like Replicate, its predictions keep
running while Flick restarts, and it counts how many were started (each one is paid for).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from flick.actors.messages import ResumeGeneration
from flick.fsm.conversation import State
from flick.i18n import catalog, t
from flick.models.db import pool
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.harnesses import EngineFactory, HarnessFactory, VideoFactory
from flick.testing.inflight import CountingVideo

UID = 801


@pytest_asyncio.fixture
async def engine(database_url: str, storage: S3Storage, tmp_path: Path) -> EngineFactory:
    """`engine(**options)`: an EngineHarness (not started) on the test's database and bucket."""
    count = iter(range(100))
    await storage.put("warm-up", b"warm", "text/plain")  # SeaweedFS sets a new bucket up slowly

    def make(**options: Any) -> EngineHarness:
        return EngineHarness(database_url, storage, tmp_path / f"run{next(count)}", **options)

    return make


async def one_photo(h: EngineHarness, tools: EngineTools) -> list[str]:
    await tools.to_photos(h, UID, "kiss")
    await h.photo(UID, tools.jpeg("red"))
    await h.settle()
    state, data = await tools.saved(UID)
    photos: list[str] = data["photos"]
    assert state == State.WAITING_FOR_PHOTOS.value and len(photos) == 1
    return photos


async def second_photo_makes_the_video(
    h: EngineHarness, tools: EngineTools, photos: list[str]
) -> None:
    await h.photo(UID, tools.jpeg("blue"))
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    row = await pool().fetchrow("SELECT status, style, photo1_key FROM generations")
    assert (row["status"], row["style"], row["photo1_key"]) == ("done", "kiss", photos[0])
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID)
    assert [r["reason"] for r in await tools.ledger(UID)] == ["free", "generation"]


async def test_clean_restart_continues_the_conversation(
    engine: EngineFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    video = video_factory()
    async with engine(video=video) as first:
        photos = await one_photo(first, tools)

    async with engine(video=video, fresh=False) as second:
        assert second.app.supervisor.actors == {}
        await h_text(second)
        assert tools.texts(second, UID) == [t("en", "expect_photos")]
        await second_photo_makes_the_video(second, tools, photos)


async def h_text(h: EngineHarness) -> None:
    await h.text(UID, "did you forget me?")
    await h.settle()


async def test_abrupt_stop_continues_the_conversation(
    engine: EngineFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    video = video_factory()
    ready: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

    async def run_engine() -> None:
        async with engine(video=video) as first:
            ready.set_result(await one_photo(first, tools))
            await asyncio.Event().wait()  # serving, until the process is killed

    task = asyncio.create_task(run_engine())
    photos = await ready
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with engine(video=video, fresh=False) as second:
        await second_photo_makes_the_video(second, tools, photos)


async def wait_animating(tools: EngineTools, video: CountingVideo) -> int:
    async def animating() -> bool:
        row = await pool().fetchrow("SELECT status, prediction_id FROM generations")
        return row is not None and row["status"] == "animating" and bool(row["prediction_id"])

    await tools.wait_for(animating, "the generation reached the video step")
    return int(await pool().fetchval("SELECT id FROM generations"))


async def test_generation_interrupted_mid_animate_is_resumed_and_charged_once(
    engine: EngineFactory, tools: EngineTools, video_factory: VideoFactory, database_url: str
) -> None:
    video = video_factory()
    image = tools.CountingImage(tools.LocalImageProvider(), tools.InFlight())
    video.gate.clear()  # the prediction is still rendering when Flick stops
    async with engine(video=video, image=image) as first:
        await tools.to_photos(first, UID)
        await first.photo(UID)
        await first.photo(UID)
        await first.settle(generations=False)
        gen_id = await wait_animating(tools, video)
        assert len(video.started) == 1
    # The clean stop left the prediction running and the row where it was.
    row = await read_row(database_url, gen_id)
    assert (row["status"], row["refunded"]) == ("animating", False)
    assert row["prediction_id"] == video.started[0]

    async with engine(video=video, image=image, fresh=False) as second:
        await tools.quiet(second)

        async def resumed() -> bool:  # its job, handed back at the stop, is taken at the start
            return second.app.supervisor.generations_running == 1

        await tools.wait_for(resumed, "the generation resumed on start")
        second.app.supervisor.post(UID, ResumeGeneration(gen_id))  # a second resume is a no-op
        await tools.quiet(second)
        assert (await tools.saved(UID))[0] == State.PROCESSING.value
        video.gate.set()
        await second.settle()

        assert len(tools.calls(second, "send_video", UID)) == 1
        assert await tools.generation_status(gen_id) == "done"
        assert len(video.started) == 1, "the resumed generation paid for a second prediction"
        assert image.calls == 1, "the resumed generation composed the picture again"
        assert await second.balance(UID) == 0 == await second.ledger_sum(UID)
        assert [r["reason"] for r in await tools.ledger(UID)] == ["free", "generation"]
        assert (await tools.saved(UID))[0] == State.IDLE.value
        # The status message of the first run is edited, not sent anew.
        assert not [s for s in tools.calls(second, "send_text", UID) if tools.is_status(s.text)]


async def read_row(database_url: str, gen_id: int) -> asyncpg.Record:
    """Read a generation while no engine runs (an engine would resume it)."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT * FROM generations WHERE id = $1", gen_id)
    finally:
        await conn.close()


async def test_prediction_lost_across_a_restart_is_refunded_once(
    engine: EngineFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    old = video_factory()
    old.gate.clear()
    async with engine(video=old) as first:
        await tools.to_photos(first, UID)
        await first.photo(UID)
        await first.photo(UID)
        await first.settle(generations=False)
        gen_id = await wait_animating(tools, old)
    await old.inner.close()  # the provider forgot it (say, Replicate deleted it)

    fresh = video_factory()
    async with engine(video=fresh, fresh=False) as second:
        await second.settle()
        assert await tools.generation_status(gen_id) == "failed"
        failures = {t("en", k, n=1) for k in catalog("en").plurals if k.startswith("failed_")}
        replies = tools.texts(second, UID)
        assert len(replies) == 1 and replies[0] in failures, replies
        assert fresh.started == []  # it did not quietly pay for a new one either
        assert await second.balance(UID) == 1 == await second.ledger_sum(UID)
        assert [r["reason"] for r in await tools.ledger(UID)] == ["free", "generation", "refund"]
        assert (await tools.saved(UID))[0] == State.IDLE.value

    async with engine(video=fresh, fresh=False) as third:  # nothing left to resume
        await third.settle()
        assert third.app.supervisor.generations_running == 0
        assert third.outbox.sent == []
        assert await third.balance(UID) == 1


async def test_generation_interrupted_by_an_abrupt_stop_is_resumed(
    engine: EngineFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    video = video_factory()
    video.gate.clear()
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def run_engine() -> None:
        async with engine(video=video) as first:
            await tools.to_photos(first, UID)
            await first.photo(UID)
            await first.photo(UID)
            await first.settle(generations=False)
            started.set_result(await wait_animating(tools, video))
            await asyncio.Event().wait()

    task = asyncio.create_task(run_engine())
    gen_id = await started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    video.gate.set()
    async with engine(video=video, fresh=False) as second:
        await second.settle()
        assert len(tools.calls(second, "send_video", UID)) == 1
        assert await tools.generation_status(gen_id) == "done"
        assert len(video.started) == 1
        assert [r["reason"] for r in await tools.ledger(UID)] == ["free", "generation"]


async def test_a_photo_being_stored_during_a_clean_stop_is_not_lost(
    engine: EngineFactory, tools: EngineTools
) -> None:
    held = tools.HeldOutbox()
    first = await engine(outbox=held).__aenter__()
    try:
        await one_photo(first, tools)
        second_photo = tools.photo_event(first, UID, tools.jpeg("blue"))
        gate = held.hold(second_photo.photo.file_id)  # a slow download
        await first.send(second_photo)
        await tools.quiet(first)
        assert first.app.supervisor.actors[UID].pending_photos == 1
    finally:
        stopping = asyncio.ensure_future(first.__aexit__(None, None, None))
        await asyncio.sleep(0)
        gate.set()  # the download completes while the engine stops
        await stopping

    async with engine(fresh=False) as second:
        await second.settle()
        photos = (await tools.saved(UID))[1]["photos"]
        told = t("en", "photo_failed") in tools.texts(second, UID)
        gens = await pool().fetchval("SELECT count(*) FROM generations")
        assert gens == 1 or len(photos) == 2 or told, "the second photo vanished"


async def test_a_stop_between_delivery_and_the_actor_hearing_of_it_leaves_no_user_busy(
    harness: HarnessFactory,
) -> None:
    """Found by bench/faults.py: the row said 'done' while the session still said PROCESSING."""
    import json

    import asyncpg

    from flick.i18n import t
    from flick.models.db import pool

    uid = 7771
    h = await harness()
    await h.make_video(uid)
    gen_id = await pool().fetchval('SELECT id FROM generations WHERE "user" = $1', uid)
    assert await pool().fetchval("SELECT status FROM generations WHERE id = $1", gen_id) == "done"
    await h.app.__aexit__(None, None, None)
    # What a SIGKILL right after the delivery leaves behind.
    conn = await asyncpg.connect(h._url)
    try:
        await conn.execute(
            'UPDATE user_sessions SET state = $2, data = $3 WHERE "user" = $1',
            uid,
            "processing",
            json.dumps({"generation_id": gen_id, "photos": ["a", "b"]}),
        )
    finally:
        await conn.close()
    h2 = await harness(fresh=False)
    await h2.command(uid, "create")
    await h2.settle()
    replies = [s.text for s in h2.outbox.to(uid) if s.method == "send_text"]
    assert replies == [t("en", "no_credits", balance=0)]  # not "busy": the free credit was spent
    state = await pool().fetchval('SELECT state FROM user_sessions WHERE "user" = $1', uid)
    assert state == "idle"
