"""A single photo is answered before it is stored (#19): "now send the second one" does not wait
for the download, the normalisation, the storage write or the session save. The photo counts
only once stored and saved, and whatever goes wrong after the reply is told plainly.

The storage here is the test's SeaweedFS behind `HeldStorage`, which can hold photo writes (so
the reply is seen while the write has not happened) or refuse them (S3 failing after the reply).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from flick.actors.messages import Crash
from flick.i18n import t
from flick.models.db import pool
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.held_storage import HeldStorage

UID = 7301
ONE_MORE = t("en", "photo_one_more")


@asynccontextmanager
async def waiting_for_photos(
    database_url: str, storage: S3Storage, tmp_path: Path, tools: EngineTools
) -> AsyncIterator[tuple[EngineHarness, HeldStorage]]:
    store = HeldStorage(storage)
    async with EngineHarness(database_url, store, tmp_path / "engine") as h:
        await tools.to_photos(h, UID)
        yield h, store


async def stored_photos(tools: EngineTools) -> list[str]:
    photos: list[str] = (await tools.saved(UID))[1]["photos"]
    return photos


async def write_held(tools: EngineTools, store: HeldStorage, h: EngineHarness) -> None:
    """The photo was downloaded and normalised, and its storage write waits at the gate."""

    async def held() -> bool:
        return store.waiting == 1

    await tools.wait_for(held, "the photo's storage write to start")
    await tools.quiet(h)


async def test_a_single_photo_is_answered_before_it_is_stored(
    database_url: str, storage: S3Storage, tmp_path: Path, tools: EngineTools
) -> None:
    async with waiting_for_photos(database_url, storage, tmp_path, tools) as (h, store):
        gate = store.hold()
        before = len(tools.texts(h, UID))
        await h.photo(UID, tools.jpeg("red"))
        await write_held(tools, store, h)
        assert tools.texts(h, UID)[before:] == [ONE_MORE]
        assert await stored_photos(tools) == []  # answered, not counted: nothing stored yet
        assert [k async for k in storage.keys(f"photos/{UID}/")] == []

        gate.set()
        await h.settle()
        assert tools.texts(h, UID)[before:] == [ONE_MORE]  # said once
        keys = await stored_photos(tools)
        assert len(keys) == 1 and [k async for k in storage.keys(f"photos/{UID}/")] == keys


async def test_a_photo_we_fail_to_store_after_its_reply_is_told_and_not_counted(
    database_url: str, storage: S3Storage, tmp_path: Path, tools: EngineTools
) -> None:
    async with waiting_for_photos(database_url, storage, tmp_path, tools) as (h, store):
        store.failing = True
        before = len(tools.texts(h, UID))
        photo = await h.photo(UID, tools.jpeg("red"))
        await h.settle()
        assert tools.texts(h, UID)[before:] == [ONE_MORE, t("en", "photo_failed")]
        assert await stored_photos(tools) == []
        await h.app.supervisor.journal.flush()
        handled = await pool().fetchval(
            'SELECT count(*) FROM handled_updates WHERE "user" = $1 AND event_id = $2',
            UID,
            photo.event_id,
        )
        assert handled == 0  # not handled: Telegram's redelivery of it is taken again

        store.failing = False
        await h.send(photo)  # the redelivery, with storage back
        await h.settle()
        assert tools.texts(h, UID)[before:] == [ONE_MORE, t("en", "photo_failed"), ONE_MORE]
        assert len(await stored_photos(tools)) == 1


async def test_a_bad_photo_answered_at_once_still_gets_its_reason(
    database_url: str, storage: S3Storage, tmp_path: Path, tools: EngineTools
) -> None:
    async with waiting_for_photos(database_url, storage, tmp_path, tools) as (h, _):
        before = len(tools.texts(h, UID))
        await h.photo(UID, tools.jpeg("white", (20, 20)))
        await h.settle()
        assert tools.texts(h, UID)[before:] == [ONE_MORE, t("en", "photo_too_small")]
        assert await stored_photos(tools) == []


async def test_a_photo_redelivered_while_it_is_stored_is_answered_and_counted_once(
    database_url: str, storage: S3Storage, tmp_path: Path, tools: EngineTools
) -> None:
    async with waiting_for_photos(database_url, storage, tmp_path, tools) as (h, store):
        gate = store.hold()
        before = len(tools.texts(h, UID))
        photo = await h.photo(UID, tools.jpeg("red"))
        await write_held(tools, store, h)
        await h.send(photo)  # Telegram redelivers it while it is being stored
        await tools.quiet(h)
        gate.set()
        await h.settle()
        await h.send(photo)  # and again once it counted
        await h.settle()
        assert tools.texts(h, UID)[before:] == [ONE_MORE]
        assert len(await stored_photos(tools)) == 1


async def test_a_crash_after_the_reply_charges_nothing_for_a_photo_never_stored(
    database_url: str, storage: S3Storage, tmp_path: Path, tools: EngineTools
) -> None:
    """Photo 1 answered, then the actor crashes and storing photo 1 fails: photo 2 is then the
    only photo, so no video starts and no credit is taken."""
    async with waiting_for_photos(database_url, storage, tmp_path, tools) as (h, store):
        gate = store.hold()
        store.failing = True
        balance = await h.balance(UID)
        before = len(tools.texts(h, UID))
        await h.photo(UID, tools.jpeg("red"))
        await write_held(tools, store, h)
        h.app.supervisor.post(UID, Crash())

        async def crashed() -> bool:
            return h.app.supervisor.crashes == 1

        await tools.wait_for(crashed, "the actor to crash")
        gate.set()  # the write fails now, and its report goes to the restarted actor
        await tools.settle_all(h)

        store.failing = False
        await h.photo(UID, tools.jpeg("blue"))
        await h.settle()
        assert tools.texts(h, UID)[before:] == [
            ONE_MORE,
            t("en", "crash_sorry"),
            t("en", "photo_failed"),
            ONE_MORE,
        ]
        assert len(await stored_photos(tools)) == 1
        assert await pool().fetchval('SELECT count(*) FROM generations WHERE "user" = $1', UID) == 0
        assert await h.balance(UID) == balance
