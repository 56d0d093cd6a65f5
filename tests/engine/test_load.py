"""Many users at once: each user's replies come in that user's order, one user's slow video holds
nobody else up, and the global AI limiter bounds the provider calls in flight.

No timings are asserted: "does not delay" is checked as state (every other reply is recorded while
the slow video is provably still running), speed is for the benchmarks under bench/.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from flick.fsm.conversation import State
from flick.i18n import t
from flick.models import generation_jobs
from flick.models.db import pool
from flick.pipeline.local import LocalImageProvider
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.inflight import CountingVideo

Harness = Callable[..., Awaitable[EngineHarness]]  # the `harness` fixture
USERS = 1000
SLOW = 1
COMMANDS = ("start", "balance", "help")


async def test_a_thousand_users_at_once_each_in_order(
    harness: Harness, tools: EngineTools, video_factory: Callable[..., CountingVideo]
) -> None:
    video = video_factory()
    video.gate.clear()  # the slow user's prediction keeps "processing" until we let it finish
    h = await harness(video=video, db_pool_max=10)

    await tools.to_photos(h, SLOW)
    await h.photo(SLOW)
    await h.photo(SLOW)
    await h.settle(generations=False)
    gen_id = (await tools.saved(SLOW))[1]["generation_id"]

    async def animating() -> bool:
        return bool(await tools.generation_status(gen_id) == "animating")

    await tools.wait_for(animating, "the slow video reached the animating step")

    # Every user sends /start, /balance, /help; the users' events are interleaved at random.
    queues = {uid: list(COMMANDS) for uid in range(10_000, 10_000 + USERS)}
    rng = random.Random(1234)
    pending = list(queues)
    while pending:
        uid = rng.choice(pending)
        await h.command(uid, queues[uid].pop(0))
        if not queues[uid]:
            pending.remove(uid)
    await h.settle(generations=False)

    # The slow video is still running: nobody waited for it.
    assert h.app.supervisor.generations_running == 1
    assert await tools.generation_status(gen_id) == "animating"
    assert tools.calls(h, "send_video") == []

    # A user whose /start waited out the burst was told so once, before their answers
    # (flick/actors/admission.py); each answer still came, once, in order.
    notice = t("en", "busy_now")
    for uid in queues:
        texts = tools.texts(h, uid)
        assert texts.count(notice) <= 1, uid
        assert notice not in texts[1:], uid
        assert [text for text in texts if text != notice] == [
            t("en", "welcome", name=f"User{uid}", n=1, price=50),
            t("en", "balance", n=1),
            t("en", "help"),
        ], uid
    assert await pool().fetchval("SELECT count(*) FROM users WHERE balance = 1") == USERS
    assert await pool().fetchval("SELECT count(*) FROM ledger WHERE reason = 'free'") == USERS + 1

    video.gate.set()
    await h.settle()
    assert [s.chat_id for s in tools.calls(h, "send_video")] == [SLOW]
    assert (await tools.saved(SLOW))[0] == State.IDLE.value


LIMIT = 8
CROWD = 200


async def test_the_ai_limiter_bounds_calls_in_flight(
    harness: Harness, tools: EngineTools, video_factory: Callable[..., CountingVideo]
) -> None:
    meter = tools.InFlight()
    gate = asyncio.Event()  # closed: compose calls stay in the provider, the crowd piles up
    image = tools.CountingImage(LocalImageProvider(size=(96, 128), margin=8), meter, gate)
    video = video_factory(meter, duration=0.1, fps=10, width=32, max_concurrent=4)
    h = await harness(image=image, video=video, ai_concurrency=LIMIT)
    users = range(20_000, 20_000 + CROWD)
    small = tools.jpeg("red", (80, 96))

    for uid in users:
        await h.command(uid, "create")
    await h.settle()
    for uid in users:
        await h.press(uid, "consent", h.outbox.to(uid)[-1].message_id)
    await h.settle()
    for uid in users:
        await h.pick_style(uid, ("romantic", "hug", "kiss", "dance")[uid % 4])
    await h.settle()
    for uid in users:
        await h.photo(uid, small)
        await h.photo(uid, small)
    await h.settle(generations=False)

    # The crowd fills the AI seats: LIMIT calls are in the provider and everyone else waits in
    # the queue (pgqueuer's limit on the generate entrypoint).
    await meter.reached(LIMIT)

    async def all_queued() -> bool:
        return len(await generation_jobs.queued_in_order()) == CROWD - LIMIT

    await tools.wait_for(all_queued, "every other generation waits for a seat")
    assert meter.now == LIMIT and h.app.limiter.running == LIMIT  # the bound, with 192 waiting
    gate.set()
    await h.settle(timeout=120)

    assert h.app.limiter.peak == LIMIT
    assert meter.peak == LIMIT, f"{meter.peak} provider calls in flight, limit {LIMIT}"
    assert meter.now == 0 and h.app.limiter.running == 0 and h.app.limiter.waiting == 0
    assert image.calls == CROWD and len(video.started) == CROWD

    videos = tools.calls(h, "send_video")
    assert sorted(s.chat_id or 0 for s in videos) == list(users)
    assert (
        await pool().fetchval(
            "SELECT count(*) FROM generations WHERE status = 'done' AND NOT refunded"
        )
        == CROWD
    )
    assert await pool().fetchval("SELECT count(*) FROM users WHERE balance = 0") == CROWD
    # Those who waited were told their place in the queue.
    queued = [s for s in h.outbox.sent if s.text.startswith("⏳")]
    assert queued
