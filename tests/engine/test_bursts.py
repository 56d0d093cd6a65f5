"""Fast input (#15): albums and bursts of photos get replies that agree with each other and with
what Flick does. The rules are in `flick/actors/handlers/bursts.py`; each shape has a test here.

Photos are told apart by colour: each test checks the colours of the two photos the generation
used, read back from storage, and which photos were downloaded at all.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from loguru import logger
from PIL import Image

from flick import events as ev
from flick.fsm.conversation import State
from flick.i18n import t
from flick.models.db import pool
from flick.ports import Keyboard, Storage
from flick.testing.db_outage import DbProxy
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.inflight import CountingVideo
from flick.testing.memory import RecordingOutbox
from flick.testing.waits import until

Harness = Callable[..., Awaitable[EngineHarness]]
UID = 7101
RGB = {
    "red": (255, 0, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "green": (0, 128, 0),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "purple": (128, 0, 128),
    "orange": (255, 165, 0),
    "cyan": (0, 255, 255),
    "gray": (128, 128, 128),
}
TEN = list(RGB)


class WatchedOutbox(RecordingOutbox):
    """The recording outbox, noting each photo downloaded; a test may hold a download."""

    def __init__(self) -> None:
        super().__init__()
        self.downloaded: list[str] = []
        self.holds: dict[str, asyncio.Event] = {}
        self.broken: set[str] = set()  # downloads that fail (a bug of ours, not retried)

    def hold(self, photo: ev.Photo) -> asyncio.Event:
        gate = self.holds[photo.photo.file_id] = asyncio.Event()
        return gate

    async def download(self, photo: ev.PhotoRef) -> AsyncIterator[bytes]:
        self.downloaded.append(photo.file_id)
        gate = self.holds.get(photo.file_id)
        if gate is not None:
            await gate.wait()
        if photo.file_id in self.broken:
            raise RuntimeError("a failure of ours")
        async for chunk in super().download(photo):
            yield chunk


async def start(harness: Harness, tools: EngineTools, **options: object) -> EngineHarness:
    """An engine whose user UID is waiting for photos."""
    h = await harness(outbox=WatchedOutbox(), **options)
    await tools.to_photos(h, UID)
    return h


def album(
    h: EngineHarness, tools: EngineTools, colours: list[str], group: str | None = "album"
) -> list[ev.Photo]:
    """Photo events (not yet sent) of these colours, sharing a media group unless `group=None`."""
    photos: list[ev.Photo] = [
        tools.photo_event(h, UID, tools.jpeg(c), media_group=group) for c in colours
    ]
    return photos


async def send_all(h: EngineHarness, photos: list[ev.Photo]) -> None:
    # Back to back, as the adapter hands over an album's messages.
    for photo in photos:
        await h.send(photo)


def downloaded(h: EngineHarness, photos: list[ev.Photo]) -> list[int]:
    """Which of `photos` were downloaded (their numbers, from 1)."""
    outbox = h.outbox
    assert isinstance(outbox, WatchedOutbox)
    ids = [p.photo.file_id for p in photos]
    return sorted(ids.index(f) + 1 for f in outbox.downloaded if f in ids)


async def colour(h: EngineHarness, key: str) -> str:
    storage = h.app.storage
    assert storage is not None
    with Image.open(io.BytesIO(await storage.get(key))) as img:
        px = img.convert("RGB").getpixel((img.width // 2, img.height // 2))
    assert isinstance(px, tuple)
    return min(RGB, key=lambda name: sum((a - b) ** 2 for a, b in zip(RGB[name], px, strict=True)))


async def used(h: EngineHarness) -> list[str]:
    """The colours of the photos of the user's one generation, in its order."""
    rows = await pool().fetch(
        'SELECT photo1_key, photo2_key FROM generations WHERE "user" = $1', UID
    )
    assert len(rows) == 1, f"{len(rows)} generations"
    return [await colour(h, rows[0]["photo1_key"]), await colour(h, rows[0]["photo2_key"])]


def replies(h: EngineHarness, tools: EngineTools, since: int) -> list[str]:
    texts: list[str] = tools.texts(h, UID)[since:]
    return texts


# ---- bursts Flick can use ----------------------------------------------------------------------
async def test_album_of_two_is_the_pair_in_the_order_sent(
    harness: Harness, tools: EngineTools
) -> None:
    h = await start(harness, tools)
    before = len(tools.texts(h, UID))
    photos = album(h, tools, ["red", "blue"])
    outbox = h.outbox
    assert isinstance(outbox, WatchedOutbox)
    gate = outbox.hold(photos[0])  # the first arrives last: the order is still the order sent
    await send_all(h, photos)
    await tools.quiet(h)
    gate.set()
    await h.settle()
    assert replies(h, tools, before) == []  # no "send the second one": it was already sent
    assert await used(h) == ["red", "blue"]
    assert len(tools.calls(h, "send_video", UID)) == 1


async def test_album_of_three_uses_the_first_two_and_says_so_once(
    harness: Harness, tools: EngineTools
) -> None:
    h = await start(harness, tools)
    before = len(tools.texts(h, UID))
    photos = album(h, tools, ["red", "blue", "yellow"])
    await send_all(h, photos)
    await h.settle()
    assert replies(h, tools, before) == [t("en", "photos_used_two", first=1, second=2, n=3)]
    assert await used(h) == ["red", "blue"]
    assert downloaded(h, photos) == [1, 2]  # the third was never needed
    assert len(tools.calls(h, "send_video", UID)) == 1
    assert await h.balance(UID) == 0


async def test_album_of_ten(harness: Harness, tools: EngineTools) -> None:
    h = await start(harness, tools)
    before = len(tools.texts(h, UID))
    photos = album(h, tools, TEN)
    await send_all(h, photos)
    await h.settle()
    assert replies(h, tools, before) == [t("en", "photos_used_two", first=1, second=2, n=10)]
    assert await used(h) == ["red", "blue"]
    assert downloaded(h, photos) == [1, 2]
    assert len(tools.calls(h, "send_video", UID)) == 1


async def test_burst_of_three_single_photos(harness: Harness, tools: EngineTools) -> None:
    """Single photos sent while the first is still being fetched are one burst, like an album.
    The first, sent on its own, was acknowledged at once ("send the second one", #19)."""
    h = await start(harness, tools)
    outbox = h.outbox
    assert isinstance(outbox, WatchedOutbox)
    before = len(tools.texts(h, UID))
    photos = album(h, tools, ["red", "blue", "yellow"], group=None)
    gate = outbox.hold(photos[0])  # a slow network: the others come while it downloads
    for photo in photos:
        await h.send(photo)
        await tools.quiet(h)
    gate.set()
    await h.settle()
    assert replies(h, tools, before) == [
        t("en", "photo_one_more"),
        t("en", "photos_used_two", first=1, second=2, n=3),
    ]
    assert await used(h) == ["red", "blue"]
    assert downloaded(h, photos) == [1, 2]


async def test_album_after_one_photo_uses_its_first(harness: Harness, tools: EngineTools) -> None:
    h = await start(harness, tools)
    await h.photo(UID, tools.jpeg("green"))
    await h.settle()
    before = len(tools.texts(h, UID))
    photos = album(h, tools, ["red", "blue"])
    await send_all(h, photos)
    await h.settle()
    assert replies(h, tools, before) == [t("en", "photos_used_one", first=1, n=2)]
    assert await used(h) == ["green", "red"]
    assert downloaded(h, photos) == [1]


async def test_a_refused_photo_in_an_album_is_replaced_by_the_next(
    harness: Harness, tools: EngineTools
) -> None:
    """Photo 1 too small: photos 2 and 3 are used, and the only words are photo 1's reason."""
    h = await start(harness, tools)
    before = len(tools.texts(h, UID))
    photos = [
        tools.photo_event(h, UID, tools.jpeg("white", (20, 20)), media_group="a"),
        *album(h, tools, ["red", "blue"], group="a"),
    ]
    await send_all(h, photos)
    await h.settle()
    small = t("en", "photo_too_small")
    assert replies(h, tools, before) == [t("en", "photo_numbered", number=1, reason=small)]
    assert await used(h) == ["red", "blue"]


async def test_album_of_four_with_a_damaged_second_photo(
    harness: Harness, tools: EngineTools
) -> None:
    h = await start(harness, tools)
    before = len(tools.texts(h, UID))
    whole = tools.jpeg("white")
    broken = tools.photo_event(h, UID, whole[: len(whole) // 2], media_group="album")
    photos = [*album(h, tools, ["red"]), broken, *album(h, tools, ["blue", "yellow"])]
    await send_all(h, photos)
    await h.settle()
    damaged = t("en", "photo_damaged", format="JPEG")
    assert replies(h, tools, before) == [
        t("en", "photo_numbered", number=2, reason=damaged),
        t("en", "photos_used_two", first=1, second=3, n=4),
    ]
    assert await used(h) == ["red", "blue"]
    assert downloaded(h, photos) == [1, 2, 3]


async def test_album_of_two_with_one_refused_asks_for_one_more(
    harness: Harness, tools: EngineTools
) -> None:
    h = await start(harness, tools)
    before = len(tools.texts(h, UID))
    photos = [
        *album(h, tools, ["red"]),
        tools.photo_event(h, UID, tools.jpeg("white", (20, 20)), media_group="album"),
    ]
    await send_all(h, photos)
    await h.settle()
    small = t("en", "photo_too_small")
    assert replies(h, tools, before) == [
        t("en", "photo_numbered", number=2, reason=small),
        t("en", "photo_one_more"),
    ]
    state, data = await tools.saved(UID)
    assert state == State.WAITING_FOR_PHOTOS.value and len(data["photos"]) == 1


async def test_a_photo_we_failed_to_store_is_replaced_and_taken_again_when_redelivered(
    harness: Harness, tools: EngineTools
) -> None:
    """Our failure on photo 1 of an album of three: photos 2 and 3 make the video, the user is
    told which were used (not "send it again"), and photo 1 stays unhandled (not lost)."""
    h = await start(harness, tools)
    outbox = h.outbox
    assert isinstance(outbox, WatchedOutbox)
    before = len(tools.texts(h, UID))
    photos = album(h, tools, ["white", "red", "blue"])
    outbox.broken.add(photos[0].photo.file_id)
    await send_all(h, photos)
    await h.settle()
    assert replies(h, tools, before) == [t("en", "photos_used_two", first=2, second=3, n=3)]
    assert await used(h) == ["red", "blue"]
    await h.app.supervisor.journal.flush()  # what was recorded as handled is in the table now
    handled = await pool().fetchval(
        'SELECT count(*) FROM handled_updates WHERE "user" = $1 AND event_id = $2',
        UID,
        photos[0].event_id,
    )
    assert handled == 0


async def test_album_of_two_with_a_failure_of_ours_asks_for_that_photo_again(
    harness: Harness, tools: EngineTools
) -> None:
    h = await start(harness, tools)
    outbox = h.outbox
    assert isinstance(outbox, WatchedOutbox)
    before = len(tools.texts(h, UID))
    photos = album(h, tools, ["red", "blue"])
    outbox.broken.add(photos[1].photo.file_id)
    await send_all(h, photos)
    await h.settle()
    failed = t("en", "photo_failed")
    assert replies(h, tools, before) == [
        t("en", "photo_numbered", number=2, reason=failed),
        t("en", "photo_one_more"),
    ]
    # Telegram redelivers photo 2 and this time it downloads: the pair is complete.
    outbox.broken.clear()
    await h.send(photos[1])
    await h.settle()
    assert await used(h) == ["red", "blue"]


async def test_album_redelivered_counts_once(harness: Harness, tools: EngineTools) -> None:
    h = await start(harness, tools)
    photos = album(h, tools, ["red", "blue", "yellow"])
    await send_all(h, photos)
    await send_all(h, photos)  # Telegram redelivers while the first delivery is being taken
    await h.settle()
    after = len(tools.texts(h, UID))
    await send_all(h, photos)  # and again once it was
    await h.settle()
    assert replies(h, tools, after) == []
    assert tools.texts(h, UID).count(t("en", "photos_used_two", first=1, second=2, n=3)) == 1
    assert await used(h) == ["red", "blue"]
    assert len(tools.calls(h, "send_video", UID)) == 1
    assert await h.balance(UID) == 0


async def test_album_redelivered_after_a_restart_counts_once(
    database_url: str,
    storage: Storage,
    tmp_path: Path,
    tools: EngineTools,
    video_factory: Callable[..., CountingVideo],
) -> None:
    video = video_factory()
    async with EngineHarness(database_url, storage, tmp_path / "a", video=video) as first:
        await tools.to_photos(first, UID)
        photos = album(first, tools, ["red", "blue"])
        await send_all(first, photos)
        await first.settle()
        assert await used(first) == ["red", "blue"]
    # Flick stopped; on reconnect Telegram redelivers the album.
    second = EngineHarness(database_url, storage, tmp_path / "b", video=video, fresh=False)
    async with second:
        await send_all(second, photos)
        await second.settle()
        assert tools.texts(second, UID) == []
        assert await pool().fetchval('SELECT count(*) FROM generations WHERE "user" = $1', UID) == 1
        assert await second.balance(UID) == 0


async def test_cancel_in_the_middle_of_an_album(harness: Harness, tools: EngineTools) -> None:
    h = await start(harness, tools)
    outbox = h.outbox
    assert isinstance(outbox, WatchedOutbox)
    photos = album(h, tools, ["red", "blue", "yellow"])
    gate = outbox.hold(photos[0])
    await send_all(h, photos)
    await tools.quiet(h)
    await h.command(UID, "cancel")
    await tools.quiet(h)
    gate.set()
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "canceled")
    assert await pool().fetchval("SELECT count(*) FROM generations") == 0
    assert (await tools.saved(UID))[1]["photos"] == []


# ---- bursts Flick does not need ----------------------------------------------------------------
async def test_album_while_a_video_is_made_gets_one_busy(
    harness: Harness, tools: EngineTools, video_factory: Callable[..., CountingVideo]
) -> None:
    video = video_factory()
    video.gate.clear()
    h = await start(harness, tools, video=video)
    await send_all(h, album(h, tools, ["red", "blue"], group="first"))
    await h.settle(generations=False)
    before = len(tools.texts(h, UID))
    snapshot = await tools.snapshot(h, UID)
    await send_all(h, album(h, tools, TEN[:3], group="second"))
    await h.settle(generations=False)
    assert replies(h, tools, before) == [t("en", "busy")]
    # and three single photos at once: one more, not three
    await send_all(h, album(h, tools, TEN[:3], group=None))
    await h.settle(generations=False)
    assert replies(h, tools, before) == [t("en", "busy"), t("en", "busy")]
    assert await tools.snapshot(h, UID) == snapshot
    video.gate.set()
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1


async def test_album_before_create_gets_one_hint(harness: Harness, tools: EngineTools) -> None:
    h = await harness(outbox=WatchedOutbox())
    photos = album(h, tools, ["red", "blue", "yellow"])
    await send_all(h, photos)
    await h.settle()
    assert tools.texts(h, UID) == [t("en", "hint_create")]
    assert downloaded(h, photos) == []
    # A later album is a new burst, with its own (one) answer.
    await send_all(h, album(h, tools, ["red", "blue"], group="later"))
    await h.settle()
    assert tools.texts(h, UID) == [t("en", "hint_create")] * 2


async def test_late_photo_of_an_album_that_started_the_video_is_not_told_busy(
    harness: Harness, tools: EngineTools, video_factory: Callable[..., CountingVideo]
) -> None:
    video = video_factory()
    video.gate.clear()
    h = await start(harness, tools, video=video)
    photos = album(h, tools, ["red", "blue", "yellow"])
    await send_all(h, photos[:2])
    await h.settle(generations=False)
    before = len(tools.texts(h, UID))
    await h.send(photos[2])  # the album's third message, delivered after the video started
    await h.settle(generations=False)
    assert replies(h, tools, before) == []
    video.gate.set()
    await h.settle()
    assert await used(h) == ["red", "blue"]


async def test_album_before_the_style_gets_one_reminder(
    harness: Harness, tools: EngineTools
) -> None:
    h = await harness(outbox=WatchedOutbox())
    await h.command(UID, "create")
    await h.settle()
    await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    before = len(tools.texts(h, UID))
    photos = album(h, tools, ["red", "blue", "yellow"])
    await send_all(h, photos)
    await h.settle()
    assert replies(h, tools, before) == [t("en", "expect_style")]
    assert downloaded(h, photos) == []


async def test_album_of_photos_all_too_big_gets_its_reasons_numbered(
    harness: Harness, tools: EngineTools
) -> None:
    """Refused unseen (Telegram told the sizes): still one burst, each photo's reason numbered,
    and the conversation still waits for two photos."""
    limit = 2048
    h = await start(harness, tools, max_photo_bytes=limit)
    before = len(tools.texts(h, UID))
    big = tools.jpeg("red", (600, 600))
    assert len(big) > limit
    photos = [tools.photo_event(h, UID, big, media_group="big") for _ in range(3)]
    await send_all(h, photos)
    await h.settle()
    too_big = t("en", "photo_too_big", mb="0")
    assert replies(h, tools, before) == [
        t("en", "photo_numbered", number=n, reason=too_big) for n in (1, 2, 3)
    ]
    assert downloaded(h, photos) == []
    state, data = await tools.saved(UID)
    assert state == State.WAITING_FOR_PHOTOS.value and data["photos"] == []


class CuttingOutbox(WatchedOutbox):
    """Takes the database away the moment a chosen text is sent: after an album's photos are
    saved, before its generation starts (`bursts._reply` says which photos it used first)."""

    def __init__(self, proxy: DbProxy, text: str) -> None:
        super().__init__()
        self.proxy, self.text = proxy, text
        self.cut = asyncio.Event()

    async def send_text(self, chat_id: int, text: str, keyboard: Keyboard | None = None) -> int:
        if text == self.text and not self.cut.is_set():
            await self.proxy.cut()
            self.cut.set()
        return await super().send_text(chat_id, text, keyboard)


async def test_album_whose_generation_start_meets_a_database_outage_still_starts_it(
    harness: Harness, tools: EngineTools, database_url: str
) -> None:
    """The photos are saved, then the database goes away: the retried handler finds the photos
    counted (no burst any more) and starts the generation once the database is back."""
    failures: list[str] = []
    sink = logger.add(
        lambda m: failures.append(str(m)), filter=lambda r: "PhotoStored failed" in r["message"]
    )
    try:
        async with DbProxy.for_url(database_url) as proxy:
            used_text = t("en", "photos_used_two", first=1, second=2, n=3)
            outbox = CuttingOutbox(proxy, used_text)
            h = await harness(
                outbox=outbox, database_url=proxy.url_for(database_url), retry_seconds=60
            )
            await tools.to_photos(h, UID)
            await send_all(h, album(h, tools, ["red", "blue", "yellow"]))
            await until(lambda: bool(failures), "the generation's start failed on the outage")
            proxy.restore()
            await h.settle()
            assert await used(h) == ["red", "blue"]
            assert len(tools.calls(h, "send_video", UID)) == 1
            assert tools.texts(h, UID).count(used_text) == 1
    finally:
        logger.remove(sink)
