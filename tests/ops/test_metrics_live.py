"""/metrics scraped over HTTP while a generation runs shows it, and its outcome afterwards."""

from __future__ import annotations

import asyncio
import gc
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from flick.ops.health import HealthServer
from flick.ops.instruments import Instruments
from flick.ops.metrics import Metrics
from flick.pipeline.limiter import AILimiter
from flick.pipeline.local import LocalVideoProvider
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness
from flick.testing.inflight import CountingVideo

UID = 4242


def value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        assert r.status == 200
        return await r.text()


async def test_metrics_show_a_running_generation(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> None:
    metrics = Metrics()
    instruments = Instruments(metrics)
    async with LocalVideoProvider(tmp_path / "videos", width=64, fps=4) as local:
        video = CountingVideo(local)
        video.gate.clear()  # the prediction stays "processing" until the test has looked
        engine = EngineHarness(
            database_url, storage, tmp_path, video=video, instruments=instruments
        )
        async with (
            engine as h,
            HealthServer("127.0.0.1:0", {"database": no_check}, metrics) as health,
        ):
            assert health.port is not None
            await h.command(UID, "start")
            await h.settle()
            await h.command(UID, "create")
            await h.settle()
            await h.press(UID, "consent", h.last_keyboard(UID).message_id)
            await h.settle()
            await h.pick_style(UID)
            await h.settle()
            await h.photo(UID)
            await h.photo(UID)
            await h.settle(generations=False)
            await video.meter.reached(1)  # the video step holds the AI slot, compose is done
            # What the periodic sampler does (every second in production), done when it matters.
            instruments.sample(h.app.supervisor, h.app.limiter)
            during = await scrape(health.port)
            assert value(during, "flick_ai_calls_running") == 1
            assert value(during, "flick_actors_live") == 1
            assert value(during, "flick_credits_spent_total") == 1
            assert value(during, 'flick_generation_step_seconds_count{step="compose"}') == 1
            video.gate.set()
            await h.settle()
            after = await scrape(health.port)
    assert value(after, 'flick_generations_finished_total{error_class="",outcome="done"}') == 1
    assert value(after, 'flick_generation_step_seconds_count{step="deliver"}') == 1


async def no_check() -> None:
    return None


async def test_the_sampler_sets_the_gauges_when_entered_and_stops_when_left() -> None:
    metrics = Metrics()
    instruments = Instruments(metrics)
    limiter = AILimiter(2)
    # Only what sample() reads of the supervisor: its actors and mailbox depth.
    supervisor: Any = SimpleNamespace(actors={1: "actor"}, mailbox_depth=lambda: 3)

    async with limiter.slot(), instruments.sampling(supervisor, limiter, every=3600):
        text = metrics.render().decode()
        assert value(text, "flick_ai_calls_running") == 1  # sampled on entry, not in a second
        assert value(text, "flick_actors_live") == 1
        assert value(text, "flick_mailbox_depth") == 3
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "metrics-sampler"]


async def test_the_collectors_pauses_are_sampled_and_its_frozen_objects_read_when_scraped() -> None:
    metrics = Metrics()
    instruments = Instruments(metrics)
    limiter = AILimiter(2)
    supervisor: Any = SimpleNamespace(actors={}, mailbox_depth=lambda: 0)
    young = 'flick_gc_pause_seconds_count{generation="0"}'
    full = 'flick_gc_pause_seconds_count{generation="2"}'

    async with instruments.sampling(supervisor, limiter, every=3600):
        assert value(metrics.render().decode(), full) == 0  # shown before any collection
        gc.collect(0)
        gc.collect(2)
        instruments.sample(supervisor, limiter)  # the sampler's next second, now
        text = metrics.render().decode()
    assert value(text, young) >= 1 and value(text, full) >= 1

    gc.collect()
    gc.freeze()  # what the scrape reads is the collector's own count, at the scrape
    try:
        frozen = gc.get_freeze_count()
        scraped = value(metrics.render().decode(), "flick_gc_frozen_objects")
    finally:
        gc.unfreeze()
    assert frozen > 1_000 and abs(scraped - frozen) < 100

    instruments.sample(supervisor, limiter)  # anything noted before leaving
    timed = value(metrics.render().decode(), full)
    gc.collect(2)  # after leaving: not timed
    instruments.sample(supervisor, limiter)
    assert value(metrics.render().decode(), full) == timed
