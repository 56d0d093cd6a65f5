"""/metrics scraped over HTTP while a generation runs shows it, and its outcome afterwards."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from flick.ops.health import HealthServer
from flick.ops.instruments import Instruments
from flick.ops.metrics import Metrics
from flick.pipeline.local import LocalVideoProvider
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness

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
    async with (
        LocalVideoProvider(tmp_path / "videos", latency=1.5, width=64, fps=4) as video,
        EngineHarness(database_url, storage, tmp_path, video=video, instruments=instruments) as h,
    ):
        checks = {"database": lambda: asyncio.sleep(0)}
        async with (
            HealthServer("127.0.0.1:0", checks, metrics) as health,
            instruments.sampling(h.app.supervisor, h.app.limiter, every=0.05),
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
            while h.app.limiter.running == 0:  # noqa: ASYNC110 - until the video step holds it
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # one sampling period
            during = await scrape(health.port)
            assert value(during, "flick_ai_calls_running") == 1
            assert value(during, "flick_actors_live") == 1
            assert value(during, "flick_credits_spent_total") == 1
            assert value(during, 'flick_generation_step_seconds_count{step="compose"}') == 1
            await h.settle()
            after = await scrape(health.port)
    assert value(after, 'flick_generations_finished_total{error_class="",outcome="done"}') == 1
    assert value(after, 'flick_generation_step_seconds_count{step="deliver"}') == 1
