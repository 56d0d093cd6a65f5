"""Again with the same photos: "Try again" and "Another style" under a delivered video start a
new generation from the photos already stored, one credit per press, and nothing for a press
the bot refuses (an older video's button, expired photos, a video being made, no credits)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg

from flick.errors import FinalError
from flick.i18n import t
from flick.models import money
from flick.models.db import pool
from flick.pipeline.local import LocalImageProvider
from flick.pipeline.runner import PipelineConfig
from flick.ports import ComposedImage
from flick.storage import photo_key
from flick.testing.engine import EngineHarness
from flick.testing.inflight import CountingVideo

Harness = Callable[..., Awaitable[EngineHarness]]
UID = 4101


class FailingAfter:
    """The local image model, failing every compose once `fail` is set (moderation)."""

    name = "local"

    def __init__(self) -> None:
        self.inner = LocalImageProvider()
        self.fail = False

    async def compose(self, photos: Sequence[bytes], prompt: str, style: str) -> ComposedImage:
        if self.fail:
            raise FinalError("blocked by moderation", kind="moderation", user_reason="moderation")
        return await self.inner.compose(photos, prompt, style)

    async def check(self) -> None:
        return None


async def gens(uid: int) -> list[dict[str, Any]]:
    rows = await pool().fetch('SELECT * FROM generations WHERE "user" = $1 ORDER BY id', uid)
    return [dict(r) for r in rows]


PHOTOS = ("photo1_key", "photo2_key")


def video_buttons(h: Any, uid: int) -> dict[str, str]:
    """The buttons under the latest video: callback data by its prefix."""
    sent = [s for s in h.outbox.to(uid) if s.method == "send_video"][-1]
    return {data.partition(":")[0]: data for _, data in sent.buttons() if data}


async def photo_keys(h: Any) -> list[str]:
    return [k async for k in h.app.storage.keys("photos/")]


async def test_try_again_makes_a_new_video_from_the_stored_photos_for_one_credit(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=2)
    await h.make_video(UID)
    first = (await gens(UID))[0]
    stored = await photo_keys(h)
    assert len(stored) == 2 and await h.balance(UID) == 1
    await h.press(UID, video_buttons(h, UID)["retry"])
    await h.settle()
    second = (await gens(UID))[1]
    assert second["status"] == "done" and second["style"] == first["style"] == "hug"
    assert [second[k] for k in PHOTOS] == [first[k] for k in PHOTOS]
    assert await photo_keys(h) == stored  # nothing uploaded again
    assert len([s for s in h.outbox.to(UID) if s.method == "send_video"]) == 2
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID) - 0  # two charges of one
    assert [(r["reason"], r["delta"]) for r in await tools.ledger(UID)][-2:] == [
        ("generation", -1),
        ("generation", -1),
    ]


async def test_another_style_shows_the_picker_then_uses_the_stored_photos(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=2)
    await h.make_video(UID)
    await h.press(UID, video_buttons(h, UID)["again"])
    await h.settle()
    assert (await tools.session(UID))[0] == tools.State.CHOOSING_AGAIN.value
    assert await h.balance(UID) == 1  # nothing charged before a style is picked
    assert tools.texts(h, UID)[-1] == t("en", "pick_style", n=1)
    await h.pick_style(UID, "kiss")
    await h.settle()
    first, second = await gens(UID)
    assert second["status"] == "done" and second["style"] == "kiss"
    assert [second[k] for k in PHOTOS] == [first[k] for k in PHOTOS]
    assert await h.balance(UID) == 0


async def test_a_double_tap_on_try_again_charges_once(
    harness: Harness, tools: SimpleNamespace, video_factory: Callable[..., CountingVideo]
) -> None:
    video = video_factory()
    h = await harness(free_credits=3, video=video)
    await h.make_video(UID)
    retry = video_buttons(h, UID)["retry"]
    video.gate.clear()  # the second video is still being made when the second tap arrives
    await h.press(UID, retry)
    await h.press(UID, retry)
    await h.settle(generations=False)
    assert len(await gens(UID)) == 2 and await h.balance(UID) == 1
    assert tools.texts(h, UID)[-1] == t("en", "busy")
    video.gate.set()
    await h.settle()
    assert [g["status"] for g in await gens(UID)] == ["done", "done"]
    assert await h.balance(UID) == 1 == await h.ledger_sum(UID)


async def test_a_redelivered_press_charges_once(harness: Harness, tools: SimpleNamespace) -> None:
    h = await harness(free_credits=3)
    await h.make_video(UID)
    press = await h.press(UID, video_buttons(h, UID)["retry"])
    await h.send(press)  # Telegram delivers the same callback again
    await h.settle()
    await h.send(press)  # and once more after the video is out
    await h.settle()
    assert len(await gens(UID)) == 2 and await h.balance(UID) == 1 == await h.ledger_sum(UID)


async def test_a_button_of_an_older_video_is_refused_and_costs_nothing(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=3)
    await h.make_video(UID)
    older = video_buttons(h, UID)
    await h.press(UID, older["retry"])
    await h.settle()
    before = await tools.snapshot(h, UID)
    for data in (older["retry"], older["again"], "retry:999999", "again:x"):
        await h.press(UID, data)
        await h.settle()
        assert tools.texts(h, UID)[-1] == t("en", "again_stale")
    assert await tools.snapshot(h, UID) == before and await h.balance(UID) == 1


async def test_someone_elses_video_button_is_refused(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=2)
    await h.make_video(UID)
    theirs = video_buttons(h, UID)["retry"]
    await h.command(UID + 1, "start")
    await h.settle()
    await h.press(UID + 1, theirs)  # a modified client can send any callback data
    await h.settle()
    assert tools.texts(h, UID + 1)[-1] == t("en", "again_stale")
    assert len(await gens(UID + 1)) == 0 and await h.balance(UID + 1) == 2


async def test_a_press_without_credits_offers_packages_and_keeps_the_photos(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=1)
    await h.make_video(UID)
    await h.press(UID, video_buttons(h, UID)["retry"])
    await h.settle()
    offer = h.outbox.to(UID)[-1]
    assert offer.text == t("en", "no_credits", balance=0)
    assert any((d or "").startswith("buy:") for _, d in offer.buttons())
    assert len(await gens(UID)) == 1 and await h.balance(UID) == 0
    assert len(await photo_keys(h)) == 2


async def test_after_the_photos_expired_a_press_asks_for_new_ones(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=2)
    await h.make_video(UID)
    buttons = video_buttons(h, UID)
    assert await h.app.sweeper.sweep(datetime.now(UTC) + timedelta(hours=25)) == 2
    assert await photo_keys(h) == []
    for data in (buttons["retry"], buttons["again"]):
        await h.press(UID, data)
        await h.settle()
        expired = h.outbox.to(UID)[-1]
        assert expired.text == t("en", "photos_expired", n=24)
        assert expired.buttons() == [(t("en", "button_create"), "create")]
    assert len(await gens(UID)) == 1 and await h.balance(UID) == 1


async def test_photos_past_their_time_count_as_expired_before_the_sweeper_runs(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=2, photo_keep_hours=0.01)  # 36 seconds, 5 minutes' margin
    await h.make_video(UID)
    await h.press(UID, video_buttons(h, UID)["retry"])
    await h.settle()
    # Part of an hour reads "1 hour": plural forms need a whole number.
    assert tools.texts(h, UID)[-1] == t("en", "photos_expired", n=1)
    assert len(await gens(UID)) == 1 and await h.balance(UID) == 1


async def test_a_failed_try_again_is_refunded_and_the_video_stays_the_latest(
    harness: Harness, tools: SimpleNamespace
) -> None:
    image = FailingAfter()
    h = await harness(free_credits=2, image=image)
    await h.make_video(UID)
    retry = video_buttons(h, UID)["retry"]
    image.fail = True
    await h.press(UID, retry)
    await h.settle()
    assert [g["status"] for g in await gens(UID)] == ["done", "failed"]
    assert await h.balance(UID) == 1 == await h.ledger_sum(UID)
    image.fail = False
    await h.press(UID, retry)  # the same button works again: its video is still the latest
    await h.settle()
    assert [g["status"] for g in await gens(UID)] == ["done", "failed", "done"]
    assert await h.balance(UID) == 0 == await h.ledger_sum(UID)


async def test_the_sweeper_keeps_photos_of_running_and_queued_generations(
    harness: Harness, tools: SimpleNamespace, video_factory: Callable[..., CountingVideo]
) -> None:
    meter = tools.InFlight()
    video = video_factory(meter)
    pipeline = PipelineConfig(poll_interval=0.02, compose_budget=600, animate_budget=600)
    h = await harness(free_credits=2, video=video, pipeline=pipeline)
    await h.make_video(UID)  # its photos are free to go
    done_photos = set(await photo_keys(h))
    video.gate.clear()
    await tools.to_photos(h, UID + 1)
    await h.photo(UID + 1)
    await h.photo(UID + 1)
    await meter.reached(1)  # its prediction is running, held
    # A generation paid for and not started yet (as a restart leaves one until it is resumed).
    assert h.app.storage is not None
    queued = [photo_key(UID + 2, datetime.now(UTC), f"q{i}") for i in range(2)]
    for key in queued:
        await h.app.storage.put(key, tools.jpeg(), "image/jpeg")
    await h.command(UID + 2, "start")
    await h.settle(generations=False)
    started = await money.start_generation(
        UID + 2, "hug", (queued[0], queued[1]), request_key="q", image_provider="local",
        video_provider="local",
    )  # fmt: skip
    assert started.record is not None and started.record.status.value == "queued"
    later = datetime.now(UTC) + timedelta(hours=25)
    assert await h.app.sweeper.sweep(later) == 2
    left = set(await photo_keys(h))
    assert not left & done_photos and len(left) == 4 and set(queued) <= left
    video.gate.set()
    await h.settle()
    # Both done now (the queue ran the paid one once a seat was free): their photos go.
    assert await h.app.sweeper.sweep(later) == 4
    assert set(await photo_keys(h)) == set()


async def test_the_app_sweeps_by_itself(harness: Harness, tools: SimpleNamespace) -> None:
    h = await harness(free_credits=1, photo_sweep_seconds=0.05)
    await h.make_video(UID)
    assert (await gens(UID))[0]["status"] == "done" and len(await photo_keys(h)) == 2
    # Now that nothing needs them, make every photo old enough: the running sweeper takes them.
    # (Not a tiny PHOTO_KEEP_HOURS from the start: a photo stored and not yet in the session
    # could go before the video is made, a race only such a keeping time can have.)
    h.app.sweeper.keep = timedelta(0)

    async def swept() -> bool:
        return await photo_keys(h) == []

    await tools.wait_for(swept, "the sweeper deleted the photos")
    assert h.app.sweeper.deleted >= 2


async def test_the_sweeper_stops_with_the_app(harness: Harness, tools: SimpleNamespace) -> None:
    h = await harness()
    task = h.app.sweeper._task
    assert task is not None and not task.done()
    await h.app.sweeper.stop()
    await asyncio.sleep(0)
    assert task.done() and h.app.sweeper._task is None


async def test_the_sweeper_keeps_photos_a_conversation_holds(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness()
    await tools.to_photos(h, UID)
    await h.photo(UID)  # the first photo, waiting for the second
    await h.settle()
    assert h.app.storage is not None
    await h.app.storage.put("photos/1/not-a-photo-key.jpg", b"x", "image/jpeg")  # no time in it
    later = datetime.now(UTC) + timedelta(days=30)
    assert await h.app.sweeper.sweep(later) == 0
    assert len(await photo_keys(h)) == 2
    await h.photo(UID)  # the pair is complete: the video is made, the photos are free to go
    await h.settle()
    assert await h.app.sweeper.sweep(later) == 2
    assert await photo_keys(h) == ["photos/1/not-a-photo-key.jpg"]


async def test_try_again_of_a_style_no_longer_offered_asks_for_another(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=2)
    await h.make_video(UID)
    styles = h.app.supervisor.ctx.styles  # the live view a styles reload changes
    hug = styles.pop("hug")
    try:
        await h.press(UID, video_buttons(h, UID)["retry"])
        await h.settle()
        assert len(await gens(UID)) == 1 and await h.balance(UID) == 1
        picker = t("en", "pick_style", n=1)  # the picker shows the balance
        assert tools.texts(h, UID)[-2:] == [t("en", "again_style_gone"), picker]
        await h.pick_style(UID, "kiss")
        await h.settle()
        assert [g["style"] for g in await gens(UID)] == ["hug", "kiss"]
        assert await h.balance(UID) == 0
    finally:
        styles["hug"] = hug


async def test_a_video_delivered_just_before_a_stop_keeps_working_buttons(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(free_credits=2)
    await h.make_video(UID)
    retry = video_buttons(h, UID)["retry"]
    gen_id = (await gens(UID))[0]["id"]
    await h.app.__aexit__(None, None, None)
    # What a SIGKILL between the delivery and the actor hearing of it leaves behind.
    conn = await asyncpg.connect(h._url)
    try:
        await conn.execute(
            'UPDATE user_sessions SET state = $2, data = $3 WHERE "user" = $1',
            UID,
            "processing",
            json.dumps({"generation_id": gen_id, "photos": []}),
        )
    finally:
        await conn.close()
    h2 = await harness(fresh=False, free_credits=2)
    await h2.press(UID, retry)
    await h2.settle()
    assert [g["status"] for g in await gens(UID)] == ["done", "done"]
    assert await h2.balance(UID) == 0 == await h2.ledger_sum(UID)
