"""Exactly one outcome per generation, and no second effect of a redelivered update.

/cancel racing every step of a generation (many times, at random moments): each generation ends
delivered or refunded, never both. A restart followed by Telegram redelivering everything since
its last confirmed state: no second welcome, no photo counted twice, no second generation. A
crash loop: backoff between restarts, and one apology per incident.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from flick import events as ev
from flick.actors import messages as msg
from flick.i18n import t
from flick.models.db import pool
from flick.testing.engine_tools import EngineTools
from flick.testing.harnesses import HarnessFactory
from flick.testing.memory import RecordingOutbox

UID = 1601


class SlowVideoOutbox(RecordingOutbox):
    """Sending a video takes until released: the user can act while it is on its way."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()
        self.release = asyncio.Event()

    async def send_video(self, *args: Any, **kwargs: Any) -> str:
        self.sending.set()
        await self.release.wait()
        return await super().send_video(*args, **kwargs)


async def outcome(uid: int) -> tuple[str, bool]:
    """The user's generation's status and refund; ("none", False) when it never started."""
    row = await pool().fetchrow('SELECT status, refunded FROM generations WHERE "user" = $1', uid)
    return (row["status"], row["refunded"]) if row else ("none", False)


async def test_cancel_while_the_video_is_being_sent_is_too_late_and_refunds_nothing(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    outbox = SlowVideoOutbox()
    h = await harness(outbox=outbox)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await outbox.sending.wait()
    await h.command(UID, "cancel")
    await h.settle(generations=False)
    assert tools.texts(h, UID)[-1] == t("en", "cancel_too_late")
    outbox.release.set()
    await h.settle()
    assert await outcome(UID) == ("done", False)
    assert len(tools.calls(h, "send_video", UID)) == 1
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID)
    assert t("en", "canceled_refunded", balance=1) not in tools.texts(h, UID)


async def test_cancel_at_random_moments_of_a_generation_has_exactly_one_outcome(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    users = list(range(1700, 1716))
    rng = random.Random(13)
    for uid in users:
        await tools.to_photos(h, uid)

    async def started(uid: int) -> bool:
        return bool(await pool().fetchval('SELECT 1 FROM generations WHERE "user" = $1', uid))

    async def race(uid: int) -> None:
        await h.photo(uid)
        await h.photo(uid)
        if uid % 2:  # half of them once their generation exists, whatever the machine's speed
            await tools.wait_for(lambda: started(uid), "the generation started")
        await asyncio.sleep(rng.uniform(0, 0.6))  # somewhere in intake, compose, animate, send
        await h.command(uid, "cancel")

    await asyncio.gather(*(race(uid) for uid in users))
    await h.settle()
    seen = set()
    for uid in users:
        status, refunded = await outcome(uid)
        seen.add(status)
        videos = tools.calls(h, "send_video", uid)
        said = tools.texts(h, uid)
        if status == "none":  # canceled while its photos were still being stored
            assert videos == [] and await h.balance(uid) == 1, uid
        elif refunded:
            assert status in ("canceled", "failed") and videos == [], uid
            assert await h.balance(uid) == 1
        else:
            assert status == "done" and len(videos) == 1, uid
            assert t("en", "canceled_refunded", balance=1) not in said
            assert await h.balance(uid) == 0
        assert await h.balance(uid) == await h.ledger_sum(uid)
    assert seen & {"canceled", "done"}  # generations did run into the race


async def test_redelivered_updates_after_a_restart_have_no_second_effect(
    harness: HarnessFactory, tools: EngineTools, tmp_path: Path
) -> None:
    first = await harness(data_dir=tmp_path / "one")
    sent: list[ev.Event] = [await first.command(UID, "start")]
    await first.settle()
    sent.append(await first.command(UID, "create"))
    await first.settle()
    sent.append(await first.press(UID, "consent", first.last_keyboard(UID).message_id))
    await first.settle()
    sent.append(await first.press(UID, "style:hug", first.last_keyboard(UID).message_id))
    await first.settle()
    sent.append(await first.photo(UID))
    sent.append(await first.photo(UID))
    await first.settle()
    paid = ev.PaymentSucceeded(first.user(UID), "pay:c1", "c1", "", "XTR", 50, "")
    sent.append(await first.send(paid))
    await first.settle()
    before = await tools.snapshot(first, UID)
    await first.__aexit__(None, None, None)

    second = await harness(data_dir=tmp_path / "two", fresh=False)
    second.outbox.files.update(first.outbox.files)
    for event in sent:  # Telegram redelivers everything it thinks unconfirmed
        await second.send(event)
    await second.settle()
    assert second.outbox.sent == []  # not a word: no second welcome, picker or thanks
    after = await tools.snapshot(second, UID)
    assert (after[0], *after[2:]) == (before[0], *before[2:])  # session, money, generations
    assert await pool().fetchval("SELECT count(*) FROM generations") == 1


async def test_a_photo_counted_before_a_kill_is_not_counted_again(
    harness: HarnessFactory, tools: EngineTools, tmp_path: Path
) -> None:
    first = await harness(data_dir=tmp_path / "one")
    await tools.to_photos(first, UID)
    photo = await first.photo(UID)
    await tools.wait_for(
        lambda: _photos_saved(UID, 1), "the first photo saved with the conversation"
    )
    # A SIGKILL loses the journal's last batch: only the saved conversation remembers it.
    first.app.supervisor.journal._pending.clear()
    await first.__aexit__(None, None, None)

    second = await harness(data_dir=tmp_path / "two", fresh=False)
    second.outbox.files.update(first.outbox.files)
    await second.send(photo)  # redelivered
    await second.photo(UID)  # and a new one
    await second.settle()
    assert t("en", "photos_enough") not in tools.texts(second, UID)
    row = await pool().fetchrow("SELECT photo1_key, photo2_key FROM generations")
    assert row["photo1_key"] != row["photo2_key"]
    assert await second.balance(UID) == 0 == await second.ledger_sum(UID)


async def _photos_saved(uid: int, n: int) -> bool:
    session = await pool().fetchval('SELECT data FROM user_sessions WHERE "user" = $1', uid)
    return session is not None and session.count("photos/") >= n


async def test_a_crash_loop_restarts_with_backoff_and_apologises_once_per_incident(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "start")
    await h.settle()
    sup = h.app.supervisor
    for _ in range(4):  # one incident: crash after crash, nothing handled between them
        sup.post(UID, msg.Crash())
    await tools.wait_for(_crashes(sup, 4), "four crashes")
    await h.settle()
    apologies = tools.texts(h, UID).count(t("en", "crash_sorry"))
    assert apologies == 1
    await h.command(UID, "balance")  # handled: the incident is over
    await h.settle()
    sup.post(UID, msg.Crash())  # a new incident
    await tools.wait_for(_crashes(sup, 5), "a fifth crash")
    await h.settle()
    assert tools.texts(h, UID).count(t("en", "crash_sorry")) == 2


def _crashes(sup: Any, n: int) -> Any:
    async def enough() -> bool:
        return bool(sup.crashes >= n and not sup._restarts)

    return enough
