"""A user's mailbox (flick/actors/mailbox.py) alone: waiting for mail, the bound on what a user
sends, and the update ids it remembers so a redelivery is not handled twice."""

from __future__ import annotations

import asyncio

import pytest

from flick.actors.mailbox import RECENT_IDS, Mailbox
from flick.testing.waits import until


async def test_an_idle_wait_ends_with_none_and_mail_wakes_a_waiting_actor() -> None:
    mailbox = Mailbox(capacity=4)
    assert await mailbox.get(0.01) is None  # silence: the actor stops
    waiting = asyncio.create_task(mailbox.get(30))
    await asyncio.sleep(0)  # it waits now
    assert mailbox.offer("hello")
    assert await waiting == "hello"
    mailbox.post("a report")
    assert await mailbox.get(0) == "a report"  # there already: no wait at all


async def test_a_cancelled_wait_leaves_the_mailbox_usable() -> None:
    # The supervisor cancels a waiting actor at shutdown; the mailbox outlives it.
    mailbox = Mailbox(capacity=4)
    waiting = asyncio.create_task(mailbox.get(30))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert mailbox.offer("after")  # no waiter left to wake
    assert await mailbox.get(30) == "after"


async def test_outside_events_are_bounded_and_the_actors_own_reports_are_not() -> None:
    mailbox = Mailbox(capacity=2)
    assert mailbox.offer(1) and mailbox.offer(2)
    assert not mailbox.offer(3)  # the user sent more than the capacity
    mailbox.post("money")  # never refused
    assert mailbox.urgent
    assert [await mailbox.get(0) for _ in range(3)] == [1, 2, "money"]
    assert mailbox.offer(4)  # room again


async def test_a_redelivered_update_is_recognised_until_it_is_among_the_oldest() -> None:
    mailbox = Mailbox(capacity=4)
    mailbox.remember(["b", "a"])  # from the database: newest first
    assert not mailbox.first_time("a") and not mailbox.first_time("b")
    assert mailbox.first_time("c")
    mailbox.forget("c")  # not handled: its redelivery must be
    assert mailbox.first_time("c")
    for n in range(RECENT_IDS):
        assert mailbox.first_time(f"later-{n}")
    assert mailbox.first_time("a")  # pushed out by RECENT_IDS newer ones
    assert not mailbox.first_time(f"later-{RECENT_IDS - 1}")


async def test_mail_that_arrives_as_the_idle_wait_ends_is_not_lost() -> None:
    mailbox = Mailbox(capacity=4)
    waiting = asyncio.create_task(mailbox.get(0.05))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, mailbox.offer, "late")  # the same instant as the timer, or near it
    first = await waiting
    if first is None:  # timed out first: the message waits for the next get
        await until(lambda: len(mailbox) == 1, "the late message in the mailbox")
        first = await mailbox.get(0)
    assert first == "late"
