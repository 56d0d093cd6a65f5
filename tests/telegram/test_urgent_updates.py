"""Money first in kurigram's update queue (flick/telegram/urgent.py): past capacity, updates wait
there before the engine sees them, and a pre-checkout query must be answered within 10 s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pyrogram.handlers import MessageHandler

from flick.telegram import urgent
from flick.telegram.urgent import urgent_first
from flick.testing.telegram import OfflineTelegram


async def test_a_pre_checkout_and_a_payment_jump_a_backlog_of_updates(tg: OfflineTelegram) -> None:
    alice = tg.user(1001, "Alice")
    queue: asyncio.Queue[Any] = asyncio.Queue()
    backlog = [tg.text(alice, f"m{i}").update for i in range(3)]
    for update in backlog:
        queue.put_nowait((update, {}, {}))
    urgent_first(queue)  # in place: what it already holds stays, in order
    later = tg.text(alice, "later").update
    pre = tg.pre_checkout(alice, payload="order", total_amount=50).update
    paid = tg.payment(alice, payload="order", total_amount=50).update
    for update in (later, pre, paid):
        queue.put_nowait((update, {}, {}))
    queue.put_nowait(None)  # a worker's stop signal is an ordinary item

    assert queue.qsize() == 7
    out = [queue.get_nowait() for _ in range(7)]
    assert queue.empty()
    assert [item[0] if item else None for item in out] == [pre, paid, *backlog, later, None]


async def test_the_running_client_queue_takes_money_first_and_still_answers(
    tg: OfflineTelegram,
) -> None:
    urgent_first(tg.client.dispatcher.updates_queue)
    urgent_first(tg.client.dispatcher.updates_queue)  # twice changes nothing
    seen: list[str] = []

    async def on_message(_client: Any, message: Any) -> None:
        seen.append(message.text)

    tg.client.add_handler(MessageHandler(on_message))
    alice = tg.user(1002, "Alice")
    await tg.push(tg.text(alice, "hello"))
    assert seen == ["hello"]


class Engine:
    """The engine as the queue sees it (flick/telegram/urgent.py's Gate): room, and who is known."""

    def __init__(self, known: set[int]) -> None:
        self.room = False
        self.known = known
        self.wake: Callable[[], None] = lambda: None

    def has_room(self) -> bool:
        return self.room

    def knows(self, user_id: int) -> bool:
        return user_id in self.known

    def watch_room(self, wake: Callable[[], None]) -> None:
        self.wake = wake


async def test_a_new_users_update_waits_unparsed_while_the_engine_has_no_room(
    tg: OfflineTelegram,
) -> None:
    known, new, payer = tg.user(1, "Known"), tg.user(2, "New"), tg.user(3, "Payer")
    engine = Engine(known={1})
    queue: asyncio.Queue[Any] = asyncio.Queue()
    urgent_first(queue, engine)
    fresh = tg.command(new, "start").update
    ongoing = tg.callback(known, "consent", message_id=1).update
    pre = tg.pre_checkout(payer, payload="order", total_amount=50).update
    for update in (fresh, ongoing, pre):
        queue.put_nowait((update, {}, {}))

    assert [queue.get_nowait()[0] for _ in range(2)] == [pre, ongoing]
    assert queue.empty() and queue.qsize() == 1  # held, not lost
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    engine.room = True
    engine.wake()  # what admission calls when a slot frees with nobody waiting
    assert (await waiter)[0] is fresh


async def test_in_a_surge_the_newest_held_update_goes_first(
    tg: OfflineTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    monkeypatch.setattr(urgent, "clock", lambda: now[0])
    engine = Engine(known=set())
    queue: asyncio.Queue[Any] = asyncio.Queue()
    urgent_first(queue, engine)
    updates = [tg.command(tg.user(uid, f"U{uid}"), "start").update for uid in (11, 12, 13)]
    for update in updates:
        queue.put_nowait((update, {}, {}))
    engine.room = True
    assert queue.get_nowait()[0] is updates[0]  # no surge yet: first come first served
    now[0] = 1.0  # the oldest held has waited past DEFER_AFTER
    assert [queue.get_nowait()[0] for _ in range(2)] == [updates[2], updates[1]]


async def test_a_workers_stop_comes_after_the_held_updates(tg: OfflineTelegram) -> None:
    engine = Engine(known=set())
    queue: asyncio.Queue[Any] = asyncio.Queue()
    urgent_first(queue, engine)
    held = tg.command(tg.user(21, "Held"), "start").update
    queue.put_nowait((held, {}, {}))
    assert queue.empty()
    queue.put_nowait(None)  # kurigram stopping its worker: nothing held is left behind
    assert [queue.get_nowait(), queue.get_nowait()] == [(held, {}, {}), None]
