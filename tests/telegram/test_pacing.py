"""Pacing: the global bucket, per-chat order, flood waits per chat, draining on stop."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from flick.telegram.outbox import TelegramOutbox
from flick.telegram.pacing import ChatPacer, TokenBucket
from flick.testing.telegram import OfflineTelegram, errors, raw
from flick.testing.waits import until


async def test_bucket_holds_the_rate() -> None:
    bucket = TokenBucket(rate=20, burst=1)
    started = time.monotonic()
    for _ in range(5):
        await bucket.take()
    assert time.monotonic() - started >= 4 / 20 * 0.9  # a lower bound only: never flaky


def test_bucket_rejects_a_zero_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


async def test_one_chat_is_served_in_order_others_alongside() -> None:
    pacer = ChatPacer(TokenBucket(rate=1000))
    delivered: list[tuple[int, int]] = []

    async def send(chat_id: int, n: int) -> None:
        async def call() -> None:
            await asyncio.sleep(random.random() / 200)
            delivered.append((chat_id, n))

        await pacer.send(chat_id, call, "message")

    await asyncio.gather(*(send(chat_id, n) for n in range(10) for chat_id in (1, 2, 3)))
    for chat_id in (1, 2, 3):
        assert [n for c, n in delivered if c == chat_id] == list(range(10))
    assert pacer.lanes == 0 and pacer.in_flight == 0


async def test_endless_flood_waits_give_up() -> None:
    pacer = ChatPacer(TokenBucket(rate=1000), max_flood_retries=1)
    calls = 0

    async def flooded() -> None:
        nonlocal calls
        calls += 1
        raise errors.FloodWait(value=0)

    with pytest.raises(errors.FloodWait):
        await pacer.send(1, flooded, "message")
    assert calls == 2


async def test_direct_call_does_not_wait_past_its_budget() -> None:
    pacer = ChatPacer(TokenBucket(rate=1000))

    async def flooded() -> None:
        raise errors.FloodWait(value=30)

    with pytest.raises(errors.FloodWait):
        await pacer.direct(flooded, "pre-checkout answer", budget=8)


async def test_stop_lets_sends_under_way_finish(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    alice = tg.user(1001)
    # Two seconds of flood wait: room for a busy machine to see the send held, still short.
    tg.fail_next(raw.functions.messages.SendMessage, errors.FloodWait(value=2), chat_id=alice.id)
    sending = asyncio.create_task(outbox.send_text(alice.id, "last words"))
    await until(lambda: outbox.pacer.blocked_for(alice.id) > 0, "the send is held by a flood wait")
    assert not sending.done()
    await outbox.stop()
    assert sending.done() and tg.texts_to(alice.id) == ["last words"]
    with pytest.raises(RuntimeError):
        await outbox.send_text(alice.id, "too late")
