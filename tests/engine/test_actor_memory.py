"""What an actor leaves behind once it stops: nothing for the garbage collector to find (#19).

Past capacity Flick freezes what survives a young collection (flick/ops/collector.py): a frozen
object is still freed by reference counting, but never by the collector. An actor that is part of
a reference cycle would then be kept until the process ends, so an actor must not be one.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Awaitable, Callable

from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools

Harness = Callable[..., Awaitable[EngineHarness]]  # the `harness` fixture
UID = 702


async def test_an_idle_stopped_actor_was_a_reference_cycle_through_its_row_write(
    harness: Harness, tools: EngineTools
) -> None:
    # The bug: RowWrite held the actor's bound method, so a stopped actor (and its conversation,
    # mailbox and logger) was garbage only the cyclic collector could free.
    h = await harness(actor_idle_seconds=0.2)
    await h.command(UID, "start")  # a new user: the row written beside the first reply
    await h.settle()
    actor = weakref.ref(h.app.supervisor.actors[UID])
    conversation = weakref.ref(h.app.supervisor.actors[UID].conv)

    async def stopped() -> bool:
        return UID not in h.app.supervisor.actors

    async def freed() -> bool:
        return actor() is None

    gc.collect()
    gc.disable()  # from here only reference counting frees anything
    try:
        await tools.wait_for(stopped, "the idle actor stopped")
        await tools.wait_for(freed, "the stopped actor freed", limit=5)
        assert conversation() is None
    finally:
        gc.enable()
    assert tools.texts(h, UID)  # it did answer before it stopped
