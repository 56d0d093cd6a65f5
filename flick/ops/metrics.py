"""Prometheus metrics for Flick, on a registry of their own.

A dedicated CollectorRegistry (not prometheus-client's global one) lets tests and tools build
several `Metrics` side by side without "duplicated timeseries" errors. The app uses `METRICS`.
"""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

#: The Content-Type that goes with `Metrics.render()`.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: The generation steps timed by `Metrics.step_seconds`.
STEPS = ("compose", "animate", "deliver")

#: Collections take a millisecond when young and small, up to seconds when full over a big heap.
_GC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, float("inf"))

# Steps run from seconds (deliver) to many minutes (animate, whose budget defaults to 600 s).
_STEP_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 450, 600, 900, float("inf"))


class Metrics:
    """Every Flick metric. Counters are exported with Prometheus' `_total` suffix."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        self.updates = Counter(
            "flick_updates", "Telegram updates received, by kind", ["kind"], registry=r
        )
        self.actors_live = Gauge("flick_actors_live", "User actors currently running", registry=r)
        self.mailbox_depth = Gauge(
            "flick_mailbox_depth", "Messages waiting in all user mailboxes", registry=r
        )
        self.ai_calls_running = Gauge(
            "flick_ai_calls_running", "AI provider calls in flight", registry=r
        )
        self.ai_calls_waiting = Gauge(
            "flick_ai_calls_waiting", "AI provider calls waiting for the global limiter", registry=r
        )
        self.step_seconds = Histogram(
            "flick_generation_step_seconds",
            "Duration of one generation step",
            ["step"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.generations = Counter(
            "flick_generations_finished",
            "Generations finished, by outcome (done, failed, cancelled) and error class",
            ["outcome", "error_class"],
            registry=r,
        )
        self.payments = Counter("flick_payments", "Successful Stars payments credited", registry=r)
        self.stars = Counter("flick_stars_received", "Telegram Stars received", registry=r)
        self.credits_granted = Counter(
            "flick_credits_granted",
            "Credits added to balances, by reason (payment, free, refund, admin)",
            ["reason"],
            registry=r,
        )
        self.credits_spent = Counter(
            "flick_credits_spent", "Credits taken for generations", registry=r
        )
        self.model_switches = Counter(
            "flick_video_model_switches",
            "Generations sent to a style's fallback model because its model's circuit was open",
            ["model", "to"],
            registry=r,
        )
        self.model_circuits = Counter(
            "flick_video_model_circuit_changes",
            "A video model's circuit opening (down) or closing (back), by model",
            ["model", "state"],
            registry=r,
        )
        self.gc_pause_seconds = Histogram(
            "flick_gc_pause_seconds",
            "How long each collection of Python's cyclic garbage collector stopped the bot, "
            "by generation (0 young, 2 full)",
            ["generation"],
            buckets=_GC_BUCKETS,
            registry=r,
        )
        self.gc_frozen = Gauge(
            "flick_gc_frozen_objects",
            "Objects the collector no longer walks: start-up's, and what survived while the "
            "engine was past capacity (flick/ops/collector.py)",
            registry=r,
        )
        # Read when scraped, not sampled: in 3.11 counting walks the frozen objects (about
        # 10 ms for the 1.3 million a surge leaves), too dear for every second.
        self.gc_frozen.set_function(gc.get_freeze_count)

        # Known label values exist from the start, so dashboards show 0 rather than "no data".
        for step in STEPS:
            self.step_seconds.labels(step=step)
        for generation in ("0", "1", "2"):
            self.gc_pause_seconds.labels(generation=generation)

    def render(self) -> bytes:
        """All metrics in the Prometheus text exposition format."""
        return generate_latest(self.registry)


METRICS = Metrics()
