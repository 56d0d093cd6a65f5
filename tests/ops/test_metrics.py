"""Metrics live on their own registry and render in Prometheus text format."""

from __future__ import annotations

from flick.ops.metrics import METRICS, STEPS, Metrics

NAMES = [
    "flick_updates_total",
    "flick_actors_live",
    "flick_mailbox_depth",
    "flick_ai_calls_running",
    "flick_ai_calls_waiting",
    "flick_generation_step_seconds_bucket",
    "flick_generations_finished_total",
    "flick_payments_total",
    "flick_stars_received_total",
    "flick_credits_granted_total",
    "flick_credits_spent_total",
    "flick_gc_pause_seconds_bucket",
    "flick_gc_frozen_objects",
]


def test_every_metric_is_rendered() -> None:
    metrics = Metrics()
    metrics.updates.labels(kind="message").inc()
    metrics.actors_live.set(3)
    metrics.mailbox_depth.inc(2)
    metrics.ai_calls_running.set(1)
    metrics.ai_calls_waiting.set(4)
    metrics.step_seconds.labels(step="animate").observe(42.0)
    metrics.generations.labels(outcome="failed", error_class="moderation").inc()
    metrics.payments.inc()
    metrics.stars.inc(225)
    metrics.credits_granted.labels(reason="payment").inc(5)
    metrics.credits_spent.inc()
    text = metrics.render().decode()
    for name in NAMES:
        assert name in text, name
    assert 'flick_updates_total{kind="message"} 1.0' in text
    assert "flick_stars_received_total 225.0" in text
    assert 'flick_generations_finished_total{error_class="moderation",outcome="failed"} 1.0' in text
    assert 'flick_generation_step_seconds_count{step="animate"} 1.0' in text


def test_steps_are_present_before_any_observation() -> None:
    text = Metrics().render().decode()
    for step in STEPS:
        assert f'flick_generation_step_seconds_count{{step="{step}"}} 0.0' in text


def test_instances_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.payments.inc()
    assert "flick_payments_total 1.0" in first.render().decode()
    assert "flick_payments_total 0.0" in second.render().decode()


def test_module_instance_renders_bytes() -> None:
    assert isinstance(METRICS.render(), bytes)
    assert b"flick_actors_live" in METRICS.render()
