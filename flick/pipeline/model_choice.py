"""Which video model a generation asks: the style's, or its fallback while the first is down.

One circuit breaker per model (`flick.fsm.breaker`), in this process's memory: a restart starts
with every circuit closed, which costs at most `threshold` more failed attempts. A generation that
already asked a model keeps it (`GenerationRecord.video_model`), so a resumed run polls or looks
for its prediction where it was created, whatever the circuits say now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger

from flick.fsm.breaker import Breaker, Circuit
from flick.fsm.generation import GenerationRecord
from flick.routes import Route

#: The key of the provider's own model (VIDEO_MODEL) when a style names none.
DEFAULT_KEY = "<VIDEO_MODEL>"


@dataclass
class ModelChooser:
    threshold: int = 3
    cool_down: float = 120.0
    clock: Callable[[], float] = time.monotonic
    #: Told of each switch: (metric name, labels, value), as `Context.on_metric`.
    on_metric: Callable[[str, dict[str, str], float], None] = lambda name, labels, value: None
    breakers: dict[str, Breaker] = field(default_factory=dict)

    def breaker(self, model: str | None) -> Breaker:
        key = model or DEFAULT_KEY
        found = self.breakers.get(key)
        if found is None:
            found = self.breakers[key] = Breaker(self.threshold, self.cool_down)
        return found

    def choose(self, route: Route, record: GenerationRecord) -> str | None:
        """The model this generation's next prediction is created on (None: VIDEO_MODEL)."""
        if record.prediction_requested_at is not None:
            # A create was asked of a model before (its id may have been lost): look there.
            return record.video_model
        primary = route.model.name
        if route.fallback is None:
            return primary
        breaker = self.breaker(primary)
        if breaker.state is not Circuit.CLOSED and not breaker.trigger("probe", now=self.clock()):
            logger.bind(generation_id=record.id).warning(
                "video model {} is down (circuit {}): generation {} uses {}",
                primary or DEFAULT_KEY,
                breaker.state.value,
                record.id,
                route.fallback.name,
            )
            self.on_metric(
                "model_switch", {"model": primary or DEFAULT_KEY, "to": str(route.fallback.name)}, 1
            )
            return route.fallback.name
        if breaker.state is Circuit.HALF_OPEN:
            logger.info("video model {}: trial call after its cool-down", primary or DEFAULT_KEY)
        return primary

    def succeeded(self, model: str | None) -> None:
        breaker = self.breaker(model)
        before = breaker.state
        breaker.trigger("success", now=self.clock())
        if before is not Circuit.CLOSED and breaker.state is Circuit.CLOSED:
            logger.info("video model {} is back: circuit closed", model or DEFAULT_KEY)
            self.on_metric("model_circuit", {"model": model or DEFAULT_KEY, "state": "closed"}, 1)

    def failed(self, model: str | None) -> None:
        """A transient failure of `model` (a model refusing its input does not count)."""
        breaker = self.breaker(model)
        before = breaker.state
        breaker.trigger("failure", now=self.clock())
        if breaker.state is Circuit.OPEN and before is not Circuit.OPEN:
            logger.warning(
                "video model {} failed {} time(s) in a row: circuit open for {:.0f}s",
                model or DEFAULT_KEY,
                self.threshold if before is Circuit.CLOSED else 1,
                self.cool_down,
            )
            self.on_metric("model_circuit", {"model": model or DEFAULT_KEY, "state": "open"}, 1)
