"""The database unreachable for a few seconds while an update arrives: nothing lost, nothing
doubled, no apology (a failure of ours is retried, not blamed on the user).

Flick talks to the real PostgreSQL through a `DbProxy` that resets every connection and refuses
new ones for the outage, as a restart or a network drop would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flick import events as ev
from flick.fsm.conversation import State
from flick.i18n import t
from flick.models.db import pool
from flick.testing.db_outage import DbProxy
from flick.testing.engine import EngineHarness

UID = 1801


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[DbProxy]:
    async with DbProxy.for_url(database_url) as running:
        yield running


@pytest.fixture
async def flick(harness: Any, proxy: DbProxy, database_url: str) -> EngineHarness:
    h: EngineHarness = await harness(database_url=proxy.url_for(database_url), retry_seconds=60)
    return h


def no_apology(h: EngineHarness, uid: int) -> bool:
    return all(s.text != t("en", "crash_sorry") for s in h.outbox.to(uid))


async def test_a_payment_while_the_database_is_down_is_credited_once_when_it_is_back(
    flick: EngineHarness, proxy: DbProxy, tools: Any
) -> None:
    await flick.command(UID, "start")
    await flick.settle()
    paid = ev.PaymentSucceeded(flick.user(UID), "pay:c-out", "c-out", "", "XTR", 225, "")
    async with proxy.outage(3.0):
        await flick.send(paid)
        await flick.send(paid)  # Telegram delivered it twice meanwhile
    await flick.settle()
    assert await flick.balance(UID) == 1 + 5 == await flick.ledger_sum(UID)
    assert await pool().fetchval("SELECT count(*) FROM payments") == 1
    assert tools.texts(flick, UID).count(t("en", "payment_thanks", n=5, balance=6)) == 1
    assert no_apology(flick, UID) and flick.app.supervisor.crashes == 0


async def test_photos_and_a_button_while_the_database_is_down_are_not_lost(
    flick: EngineHarness, proxy: DbProxy, tools: Any
) -> None:
    await flick.command(UID, "create")
    await flick.settle()
    await flick.press(UID, "consent", flick.last_keyboard(UID).message_id)
    await flick.settle()
    picker = flick.last_keyboard(UID).message_id
    async with proxy.outage(2.0):
        await flick.press(UID, "style:hug", picker)
        await flick.photo(UID)
        await flick.photo(UID)
    await flick.settle()
    assert tools.texts(flick, UID).count(t("en", "send_photos", style="🤗 Hug")) == 1
    assert len(tools.calls(flick, "send_video", UID)) == 1
    row = await pool().fetchrow("SELECT status, refunded, photo1_key, photo2_key FROM generations")
    assert (row["status"], row["refunded"]) == ("done", False)
    assert row["photo1_key"] != row["photo2_key"]
    assert await flick.balance(UID) == 0 == await flick.ledger_sum(UID)
    assert no_apology(flick, UID)


async def test_a_generation_ending_while_the_database_is_down_is_delivered_not_refunded(
    flick: EngineHarness, proxy: DbProxy, tools: Any
) -> None:
    await tools.to_photos(flick, UID)
    await flick.photo(UID)
    await flick.photo(UID)

    async def rendering() -> bool:
        status = await pool().fetchval("SELECT status FROM generations")
        return status in ("composing", "animating")

    await tools.wait_for(rendering, "the generation under way")
    async with proxy.outage(3.0):
        pass  # its remaining steps write to a database that is not there
    await flick.settle()
    row = await pool().fetchrow("SELECT status, refunded FROM generations")
    assert (row["status"], row["refunded"]) == ("done", False)
    assert len(tools.calls(flick, "send_video", UID)) == 1
    assert await flick.balance(UID) == 0 == await flick.ledger_sum(UID)
    assert (await tools.session(UID))[0] == State.IDLE.value
    assert no_apology(flick, UID)


async def test_a_cancel_while_the_database_is_down_refunds_once_when_it_is_back(
    harness: Any, proxy: DbProxy, database_url: str, tools: Any, video_factory: Any
) -> None:
    video = video_factory()
    video.gate.clear()  # the video renders until the test lets it finish
    h: EngineHarness = await harness(database_url=proxy.url_for(database_url), video=video)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await tools.wait_for(_animating, "the video rendering")
    async with proxy.outage(2.0):
        await h.command(UID, "cancel")
    await h.settle()
    video.gate.set()
    await h.settle()
    row = await pool().fetchrow("SELECT status, refunded FROM generations")
    assert (row["status"], row["refunded"]) == ("canceled", True)
    assert tools.calls(h, "send_video", UID) == []
    assert tools.texts(h, UID).count(t("en", "canceled_refunded", balance=1)) == 1
    assert await h.balance(UID) == 1 == await h.ledger_sum(UID)
    assert no_apology(h, UID)


async def _animating() -> bool:
    return bool(await pool().fetchval("SELECT status = 'animating' FROM generations"))
