"""The admission gate's rules (flick/actors/admission.py) alone, on a clock the test moves."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import pytest
from loguru import logger

from flick.actors.admission import Admission, Priority
from flick.actors.row_write import RowWrite
from flick.models import money
from flick.testing.waits import until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def waiting(admission: Admission, uid: int, priority: Priority) -> asyncio.Task[int]:
    async def enter() -> int:
        await admission.enter(uid, priority)
        return uid

    return asyncio.create_task(enter())


async def admitted_in_turn(admission: Admission, tasks: list[asyncio.Task[int]]) -> list[int]:
    """Free one slot at a time; the order in which the waiters got in."""
    order = []
    for _ in tasks:
        admission.leave()
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finished = [t for t in done if t.result() not in order]
        assert len(finished) == 1  # one slot freed, one waiter in
        order.append(finished[0].result())
    return order


async def test_users_mid_conversation_go_before_new_ones_first_come_first_served() -> None:
    admission = Admission(1, clock=Clock())
    await admission.enter(1, Priority.NEW)  # the one slot
    tasks = [
        waiting(admission, 2, Priority.NEW),
        waiting(admission, 3, Priority.ONGOING),
        waiting(admission, 4, Priority.NEW),
        waiting(admission, 5, Priority.ONGOING),
    ]
    await until(lambda: admission.waiting == 4, "four waiting")
    assert await admitted_in_turn(admission, tasks) == [3, 5, 2, 4]
    assert admission.busy == 1


async def test_money_never_waits_and_a_waiter_with_money_goes_in_at_once() -> None:
    admission = Admission(1, clock=Clock())
    await admission.enter(1, Priority.NEW)
    waiter = waiting(admission, 2, Priority.NEW)
    await until(lambda: admission.is_waiting(2), "a new user waits")
    await admission.enter(3, Priority.MONEY)  # no free slot, in anyway
    assert admission.busy == 2
    admission.promote(2)  # a payment reached user 2's mailbox
    assert await waiter == 2
    assert admission.busy == 3
    assert admission.stats.promoted == 1
    for _ in range(3):
        admission.leave()
    assert admission.busy == 0


async def surge(newest_first_after: float, priority: Priority) -> tuple[list[int], Admission]:
    """Users 2, 3 and 4 wait for the one slot and are told to (the oldest has waited 1 s, past
    defer_after); the order in which they then get in."""
    clock = Clock()
    told: list[int] = []
    admission = Admission(
        1,
        defer_after=0.02,
        newest_first_after=newest_first_after,
        on_defer=told.append,
        clock=clock,
    )
    await admission.enter(1, priority)
    tasks = [waiting(admission, uid, priority) for uid in (2, 3, 4)]
    await until(lambda: admission.waiting == 3, "three waiting")
    clock.now = 1.0
    await until(lambda: sorted(told) == [2, 3, 4], "every waiting user told")
    order = await admitted_in_turn(admission, tasks)
    assert sorted(told) == [2, 3, 4]  # once each
    await admission.close()
    return order, admission


async def test_in_a_surge_the_newest_go_first_and_the_waiting_are_told_once() -> None:
    order, admission = await surge(newest_first_after=0.5, priority=Priority.NEW)
    assert order == [4, 3, 2]  # the oldest has waited past newest_first_after: a surge
    assert admission.stats.deferred == 3


async def test_users_mid_conversation_were_starved_newest_first_after_half_a_second() -> None:
    # The bug: the switch to newest first came with the notice, at defer_after (0.5 s). The
    # users mid-conversation who wait are bounded by those let in, so in order each waits about
    # as long; newest first made a few wait for seconds (bench.engine at 2x on a slow machine:
    # p99 of the answers 2.8-4.6 s, consent and style steps, #19). Told at defer_after, served
    # in order until newest_first_after.
    order, _ = await surge(newest_first_after=2.0, priority=Priority.ONGOING)
    assert order == [2, 3, 4]


async def test_a_waiter_cancelled_at_shutdown_leaves_no_slot_taken() -> None:
    admission = Admission(1, clock=Clock())
    await admission.enter(1, Priority.NEW)
    gone = waiting(admission, 2, Priority.NEW)
    stays = waiting(admission, 3, Priority.NEW)
    await until(lambda: admission.waiting == 2, "two waiting")
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert admission.waiting == 1
    admission.leave()
    assert await stays == 3
    admission.leave()
    assert admission.busy == 0
    assert admission.waiting == 0


async def test_room_for_a_new_user_counts_actors_spawned_and_is_announced_when_a_slot_frees() -> (
    None
):
    admission = Admission(2, clock=Clock())
    announced: list[int] = []
    admission.on_room = lambda: announced.append(admission.busy)
    assert admission.has_room()
    admission.expect()  # an actor spawned, not yet asking
    await admission.enter(1, Priority.NEW)  # it asks: one slot taken, none expected
    admission.expect()
    assert not admission.has_room()  # one busy, one about to ask: both slots spoken for
    await admission.enter(2, Priority.NEW)
    assert not admission.has_room()
    admission.leave()
    assert announced == [1]
    assert admission.has_room()


async def test_a_row_write_holds_a_slot_until_it_ends_and_gives_it_back_even_unstarted() -> None:
    """flick/actors/row_write.py: the write beside a reply keeps a slot (`extend`); the slot is
    free by the time the write is awaited, and also when the task is cancelled before it ran
    (a shutdown), when its own `finally` never runs."""
    admission = Admission(1, clock=Clock())
    landed = asyncio.Event()

    async def write() -> money.Account:
        await landed.wait()
        return money.new_account("en", 1)

    await admission.enter(1, Priority.NEW)  # the actor's own slot
    row = RowWrite(write, admission)
    row.start(new=True)
    admission.leave()  # the actor replied: its slot is free, the write's is not
    assert admission.busy == 1 and not admission.has_room()
    landed.set()
    await row.settle(logger)
    assert admission.busy == 0  # at once: no callback left to run

    unstarted = RowWrite(write, admission)
    unstarted.start(new=True)
    task = unstarted._task  # the write's task, cancelled before its first step
    assert task is not None and admission.busy == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert admission.busy == 0


async def test_waiters_admitted_in_a_surge_were_kept_until_the_next_one() -> None:
    # The bug: the sweep's queue of untold waiters (and the priority queues) kept every waiter
    # of a surge, with its future, after all were admitted: tens of thousands of objects for
    # the collector to walk after a surge at 2x (#19).
    clock = Clock()
    admission = Admission(1, defer_after=0.02, clock=clock)
    await admission.enter(1, Priority.NEW)
    tasks = [waiting(admission, uid, Priority.NEW) for uid in (2, 3, 4)]
    await until(lambda: admission.waiting == 3, "three waiting")
    futures = [weakref.ref(admission._by_uid[uid].future) for uid in (2, 3, 4)]
    assert sorted(await admitted_in_turn(admission, tasks)) == [2, 3, 4]
    del tasks
    await until(lambda: all(f() is None for f in futures), "the admitted waiters let go")
    await admission.close()


async def test_a_landed_row_write_kept_its_finished_task() -> None:
    # The bug: an idle new user's actor kept the write's finished task, with its coroutine,
    # context and account, for as long as it lived (#19: what an idle actor costs the heap).
    writes = 0
    existing = dataclasses.replace(money.new_account("en", 1), created=False, balance=7)

    def writer(account: money.Account) -> Callable[[], Coroutine[Any, Any, money.Account]]:
        async def write() -> money.Account:
            nonlocal writes
            writes += 1
            return account

        return write

    for account, loaded in ((money.new_account("en", 1), None), (existing, existing)):
        writes = 0
        row = RowWrite(writer(account), Admission(1, clock=Clock()))
        row.start(new=True)
        task = row._task
        assert task is not None
        finished = weakref.ref(task)
        del task
        await until(partial(_gone, finished), "the finished write let go")
        assert not row.pending
        # What the write found is still what the actor loads, and the row is not written again.
        assert await row.landed() == loaded
        assert await row.landed() is None  # once
        assert writes == 1


def _gone(ref: weakref.ref[asyncio.Task[money.Account]]) -> bool:
    return ref() is None
