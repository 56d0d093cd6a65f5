"""The supervisor's side: an actor that crashes is restarted with the user's saved state and an
apology; an idle actor goes away and the next event brings the user's state back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from flick import events as ev
from flick.actors.messages import Crash
from flick.fsm.conversation import State
from flick.i18n import t
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.inflight import CountingVideo

Harness = Callable[..., Awaitable[EngineHarness]]  # the `harness` fixture
UID = 701


async def test_crash_mid_conversation_apologises_and_carries_on(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness()
    await tools.to_photos(h, UID, "romantic")
    await h.photo(UID, tools.jpeg("red"))
    await h.settle()
    saved = await tools.saved(UID)
    before = len(h.outbox.to(UID))

    h.app.supervisor.post(UID, Crash())
    await tools.settle_all(h)

    assert h.app.supervisor.crashes == 1
    assert [s.text for s in h.outbox.to(UID)[before:]] == [t("en", "crash_sorry")]
    assert await tools.session(UID) == saved
    actor = h.app.supervisor.actors[UID]  # restarted, with the saved state in memory
    assert actor.conv.state is State.WAITING_FOR_PHOTOS
    assert actor.conv.photos == saved[1]["photos"] and actor.conv.style == "romantic"
    assert actor.conv.balance == 1

    await h.photo(UID, tools.jpeg("blue"))
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    row = await pool().fetchrow("SELECT status, style, photo1_key FROM generations")
    assert (row["status"], row["style"]) == ("done", "romantic")
    assert row["photo1_key"] == saved[1]["photos"][0]
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID)
    assert h.app.supervisor.crashes == 1


async def test_events_queued_behind_a_crash_are_still_handled(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "start")
    h.app.supervisor.post(UID, Crash())
    await h.command(UID, "balance")
    await h.command(UID, "help")
    await h.settle()
    assert tools.texts(h, UID) == [
        t("en", "welcome", name=f"User{UID}", n=1, price=50),
        t("en", "crash_sorry"),
        t("en", "balance", n=1),
        t("en", "help"),
    ]
    assert h.app.supervisor.crashes == 1
    assert [r["reason"] for r in await tools.ledger(UID)] == ["free"]


async def test_the_apology_is_in_the_users_language(harness: Harness, tools: EngineTools) -> None:
    h = await harness()
    await h.command(UID, "language")
    await h.settle()
    await h.press(UID, "lang:ru", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    h.app.supervisor.post(UID, Crash())
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("ru", "crash_sorry")


async def test_crash_while_a_generation_runs_does_not_lose_it(
    harness: Harness, tools: EngineTools, video_factory: Callable[..., CountingVideo]
) -> None:
    video = video_factory()
    video.gate.clear()
    h = await harness(video=video)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle(generations=False)
    assert (await tools.saved(UID))[0] == State.PROCESSING.value
    h.app.supervisor.post(UID, Crash())
    await tools.settle_all(h, generations=False)
    assert h.app.supervisor.crashes == 1
    assert h.app.supervisor.generations_running == 1
    assert h.app.supervisor.actors[UID].conv.state is State.PROCESSING
    video.gate.set()
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    assert (await tools.saved(UID))[0] == State.IDLE.value
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID)


async def test_repeated_crashes_each_restart_the_actor_with_one_apology(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness()
    await tools.to_photos(h, UID)
    for _ in range(3):
        h.app.supervisor.post(UID, Crash())
        await h.settle()
    assert h.app.supervisor.crashes == 3
    # Nothing was handled between the crashes: one incident, one apology.
    assert tools.texts(h, UID).count(t("en", "crash_sorry")) == 1
    assert (await tools.saved(UID))[0] == State.WAITING_FOR_PHOTOS.value
    await h.photo(UID)
    await h.photo(UID)
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1


async def test_a_photo_being_stored_when_the_actor_crashes_is_not_lost(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness()
    await tools.to_photos(h, UID)
    await h.photo(UID, tools.jpeg("red"))  # in the mailbox, its download not started yet
    h.app.supervisor.post(UID, Crash())
    await h.settle()
    assert h.app.supervisor.crashes == 1
    _state, data = await tools.saved(UID)
    told_to_resend = t("en", "photo_failed") in tools.texts(h, UID)
    assert len(data["photos"]) == 1 or told_to_resend, "the photo vanished silently"


async def _no_actor(h: EngineHarness) -> bool:
    return UID not in h.app.supervisor.actors


async def test_idle_actor_stops_and_the_next_event_restores_its_state(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness(actor_idle_seconds=0.2)
    await tools.to_photos(h, UID, "dance")
    await h.photo(UID, tools.jpeg("red"))
    await h.settle()
    saved = await tools.saved(UID)
    await tools.wait_for(lambda: _no_actor(h), "the idle actor stopped")
    assert h.app.supervisor.actors == {}
    assert h.app.supervisor.mailbox_depth() == 0
    assert h.app.supervisor.crashes == 0

    await h.text(UID, "still there?")
    await tools.settle_all(h)
    assert tools.texts(h, UID)[-1] == t("en", "expect_photos")
    actor = h.app.supervisor.actors[UID]
    assert actor.conv.state is State.WAITING_FOR_PHOTOS
    assert actor.conv.photos == saved[1]["photos"] and actor.conv.style == "dance"

    await tools.wait_for(lambda: _no_actor(h), "the idle actor stopped again")
    await h.photo(UID, tools.jpeg("blue"))
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    assert await pool().fetchval("SELECT style FROM generations") == "dance"
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID)


async def test_idle_stop_during_a_generation_then_delivery_wakes_the_user(
    harness: Harness, tools: EngineTools, video_factory: Callable[..., CountingVideo]
) -> None:
    video = video_factory()
    video.gate.clear()
    h = await harness(video=video, actor_idle_seconds=0.2)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle(generations=False)
    await tools.wait_for(lambda: _no_actor(h), "the idle actor stopped")
    assert h.app.supervisor.generations_running == 1  # the video outlives the actor
    video.gate.set()
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    assert (await tools.saved(UID))[0] == State.IDLE.value
    assert await pool().fetchval("SELECT status FROM generations") == "done"


async def test_a_language_choice_survives_an_idle_stop(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness(actor_idle_seconds=0.2)
    await h.command(UID, "language")
    await h.settle()
    await h.press(UID, "lang:ru", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    await tools.wait_for(lambda: _no_actor(h), "the idle actor stopped")
    # Telegram still says "en"; the user's choice wins.
    await h.send(ev.Command(ev.UserInfo(UID, UID, "u", "U", "en"), h.next_id(), "balance"))
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("ru", "balance", n=1)


async def test_an_update_redelivered_after_a_crash_is_handled_once(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness()
    await tools.to_photos(h, UID)
    photo = tools.photo_event(h, UID)
    await h.send(photo)
    await h.settle()
    h.app.supervisor.post(UID, Crash())
    await tools.settle_all(h)
    await h.send(photo)  # Telegram delivers the same update again
    await h.settle()
    state, data = await tools.saved(UID)
    assert (state, len(data["photos"])) == (State.WAITING_FOR_PHOTOS.value, 1)
    assert await h.balance(UID) == 1


async def test_a_crashed_actors_photo_that_lands_after_the_idle_stop_is_not_lost(
    harness: Harness, tools: EngineTools
) -> None:
    # The download outlives the actor that started it; its restarted successor idle-stopped
    # before it finished, and the report went to a mailbox nobody read any more.
    h = await harness(actor_idle_seconds=0.2)
    await tools.to_photos(h, UID)
    gate = asyncio.Event()
    download = h.outbox.download

    async def held(photo: ev.PhotoRef) -> AsyncIterator[bytes]:
        await gate.wait()
        async for chunk in download(photo):
            yield chunk

    h.outbox.download = held  # type: ignore[method-assign]  # this outbox's downloads, held
    await h.photo(UID, tools.jpeg("red"))
    await tools.wait_for(lambda: _downloading(h), "the download started")
    h.app.supervisor.post(UID, Crash())
    # Time passing, not a synchronisation: three idle periods of the restarted actor. Nothing
    # can be waited for (an actor with a download in flight stays up), and the held download
    # keeps the state below whatever the machine's speed.
    await asyncio.sleep(0.6)
    assert h.app.supervisor.intakes_running(UID) == 1
    gate.set()
    await tools.settle_all(h)
    _state, data = await tools.saved(UID)
    assert len(data["photos"]) == 1
    assert tools.texts(h, UID)[-1] == t("en", "photo_one_more")


async def _downloading(h: EngineHarness) -> bool:
    return h.app.supervisor.intakes_running(UID) == 1
