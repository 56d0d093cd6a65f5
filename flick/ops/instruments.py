"""Feeding the Prometheus metrics from the engine's hooks, and sampling its gauges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from loguru import logger

from flick.ops.collector import PauseClock
from flick.ops.metrics import Metrics

if TYPE_CHECKING:
    from flick.actors.supervisor import Supervisor
    from flick.pipeline.limiter import AILimiter


class Instruments:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.pauses = PauseClock()  # timing collections while `sampling`

    def on_metric(self, name: str, labels: dict[str, str], value: float) -> None:
        m = self.metrics
        if name == "credits_spent":
            m.credits_spent.inc(value)
        elif name == "credits_granted":
            m.credits_granted.labels(**labels).inc(value)
        elif name == "generation":
            m.generations.labels(**labels).inc(value)
        elif name == "payment":
            m.payments.inc()
            m.stars.inc(value)
        elif name == "update":
            m.updates.labels(**labels).inc(value)
        elif name == "model_switch":
            m.model_switches.labels(**labels).inc(value)
        elif name == "model_circuit":
            m.model_circuits.labels(**labels).inc(value)

    def observe(self, step: str, seconds: float) -> None:
        self.metrics.step_seconds.labels(step=step).observe(seconds)

    def sample(self, supervisor: Supervisor, limiter: AILimiter) -> None:
        m = self.metrics
        m.actors_live.set(len(supervisor.actors))
        m.mailbox_depth.set(supervisor.mailbox_depth())
        m.ai_calls_running.set(limiter.running)
        m.ai_calls_waiting.set(limiter.waiting)
        for generation, seconds in self.pauses.drain():
            m.gc_pause_seconds.labels(generation=str(generation)).observe(seconds)

    @asynccontextmanager
    async def sampling(
        self, supervisor: Supervisor, limiter: AILimiter, every: float = 1.0
    ) -> AsyncIterator[None]:
        # The first sample is taken now, not when the task first runs: the gauges are right
        # from the moment this is entered (and a scrape or a test can rely on it).
        self.sample(supervisor, limiter)

        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                try:
                    self.sample(supervisor, limiter)
                except Exception:  # noqa: BLE001 - the gauges go stale, the bot runs on
                    logger.exception("sampling the metrics failed; trying again in {} s", every)

        with self.pauses:
            task = asyncio.create_task(loop(), name="metrics-sampler")
            try:
                yield
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
