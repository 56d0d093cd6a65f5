"""What an actor leaves behind once it stops: nothing for the garbage collector to find (#19).

Past capacity Flick freezes what survives a young collection (flick/ops/collector.py): a frozen
object is still freed by reference counting, but not by the collector until the surge is over.
An actor that is part of a reference cycle would be kept that long, with its conversation,
mailbox and row write, so an actor must not be one: neither after a plain conversation nor
after a transient error it retried through.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Awaitable, Callable

import pytest

from flick.models import money
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools

Harness = Callable[..., Awaitable[EngineHarness]]  # the `harness` fixture
UID = 702


async def _freed_once_stopped(h: EngineHarness, tools: EngineTools) -> None:
    """With the collector off, the user's idle-stopped actor (and what it owned) is freed."""
    actor = h.app.supervisor.actors[UID]
    owned = [weakref.ref(o) for o in (actor, actor.conv, actor.mailbox, actor.row_write)]
    del actor

    async def stopped() -> bool:
        return UID not in h.app.supervisor.actors

    async def freed() -> bool:
        return all(ref() is None for ref in owned)

    await tools.wait_for(stopped, "the idle actor stopped")
    await tools.wait_for(freed, "the stopped actor and what it owned freed", limit=5)


async def test_an_idle_stopped_actor_was_a_reference_cycle_through_its_row_write(
    harness: Harness, tools: EngineTools
) -> None:
    # The bug: RowWrite held the actor's bound method, so a stopped actor (and its conversation,
    # mailbox and logger) was garbage only the cyclic collector could free.
    h = await harness(actor_idle_seconds=0.2)
    await h.command(UID, "start")  # a new user: the row written beside the first reply
    await h.settle()
    gc.collect()
    gc.disable()  # from here only reference counting frees anything
    try:
        await _freed_once_stopped(h, tools)
    finally:
        gc.enable()
    assert tools.texts(h, UID)  # it did answer before it stopped


async def test_an_actor_that_retried_was_kept_by_tenacitys_cycles(
    harness: Harness, tools: EngineTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bug: the retry's state (tenacity's AsyncRetrying, a web of cycles) held the actor's
    # retry log and the error's traceback, and through both the actor.
    real = money.find_account
    failures = 0

    async def drops_once(user_id: int) -> money.Account | None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise ConnectionResetError(104, "the database dropped the connection")
        return await real(user_id)

    monkeypatch.setattr(money, "find_account", drops_once)
    h = await harness(actor_idle_seconds=0.2)
    gc.collect()
    gc.disable()  # the retry itself runs with only reference counting
    try:
        await h.command(UID, "start")
        await h.settle()
        assert failures == 1
        await _freed_once_stopped(h, tools)
    finally:
        gc.enable()
    assert tools.texts(h, UID)
