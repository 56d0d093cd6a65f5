"""Money first in kurigram's update queue (flick/telegram/urgent.py): past capacity, updates wait
there before the engine sees them, and a pre-checkout query must be answered within 10 s."""

from __future__ import annotations

import asyncio
from typing import Any

from pyrogram.handlers import MessageHandler

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
