"""Bad input: every refusal has a clear reply and changes neither the conversation nor the money.

`tools.snapshot` reads the saved session, the live actor's state, the balance, the ledger sum and
the number of generations; each test compares it before and after the bad input.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import pytest
from PIL import Image

from flick import events as ev
from flick.fsm.conversation import State
from flick.i18n import t
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.harnesses import HarnessFactory, VideoFactory

UID = 601
OTHER = 602


def noisy_jpeg(side: int) -> bytes:
    """A JPEG that does not compress away (random pixels), so its size is predictable-ish."""
    img = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95)
    return out.getvalue()


async def one_photo_in(h: EngineHarness, tools: EngineTools, uid: int = UID) -> None:
    await tools.to_photos(h, uid)
    await h.photo(uid, tools.jpeg("green"))
    await h.settle()
    state, data = await tools.saved(uid)
    assert state == State.WAITING_FOR_PHOTOS.value and len(data["photos"]) == 1


NOT_PHOTOS = [
    ("sticker", "a sticker"),
    ("voice", "a voice message"),
    ("video", "a video"),
    ("location", "a location"),
    ("contact", "a contact"),
    ("document", "a file"),
    ("audio", "an audio file"),
    ("video_note", "a video message"),
]


async def test_non_photos_where_photos_are_expected(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await one_photo_in(h, tools)
    before = await tools.snapshot(h, UID)
    for kind, label in NOT_PHOTOS:
        await h.unsupported(UID, kind)
        await h.settle()
        assert tools.texts(h, UID)[-1] == t("en", "not_a_photo", kind=label), kind
        assert await tools.snapshot(h, UID) == before, kind


async def test_text_where_photos_are_expected(harness: HarnessFactory, tools: EngineTools) -> None:
    h = await harness()
    await one_photo_in(h, tools)
    before = await tools.snapshot(h, UID)
    await h.text(UID, "here they are!")
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "expect_photos")
    assert await tools.snapshot(h, UID) == before


async def test_text_and_stickers_in_the_other_states(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.text(UID, "hello")
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "hint_create")
    await h.command(UID, "create")
    await h.settle()
    await h.unsupported(UID, "sticker")
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "expect_consent")
    await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    before = await tools.snapshot(h, UID)
    await h.text(UID, "romantic please")
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "expect_style")
    assert await tools.snapshot(h, UID) == before


@pytest.mark.parametrize(
    ("make", "reply"),
    [
        pytest.param(
            lambda jpeg: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 40,
            t("en", "photo_not_image"),
            id="pdf-named-jpg",
        ),
        pytest.param(
            lambda jpeg: jpeg[: len(jpeg) // 2],
            t("en", "photo_damaged", format="JPEG"),
            id="truncated-jpeg",
        ),
        pytest.param(
            # (A GIF signature before JPEG bytes makes Pillow read a random giant size: the PNG
            # signature fails on its first chunk, deterministically.)
            lambda jpeg: b"\x89PNG\r\n\x1a\n" + jpeg[8:],
            t("en", "photo_not_image"),
            id="garbage-with-a-header",
        ),
        pytest.param(
            lambda jpeg: _gif(), t("en", "photo_format", format="GIF"), id="gif-not-accepted"
        ),
    ],
)
async def test_image_document_that_is_not_an_image(
    harness: HarnessFactory, tools: EngineTools, make: Callable[[bytes], bytes], reply: str
) -> None:
    """Each gets its own reason (#15): not an image, a damaged one, a format we do not take."""
    h = await harness()
    await one_photo_in(h, tools)
    before = await tools.snapshot(h, UID)
    real = noisy_jpeg(200)  # big enough that half of it is mostly scan data
    await h.send(tools.photo_event(h, UID, make(real), document=True))
    await h.settle()
    assert tools.texts(h, UID)[-1] == reply
    assert await tools.snapshot(h, UID) == before
    # The conversation is intact: a good second photo still makes the video.
    await h.photo(UID, tools.jpeg("blue"))
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (200, 200), "red").save(out, "GIF")
    return out.getvalue()


async def test_photo_over_the_byte_limit_declared_or_not(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    limit = 4096
    h = await harness(max_photo_bytes=limit)
    await one_photo_in(h, tools)
    big = noisy_jpeg(120)
    assert len(big) > limit
    before = await tools.snapshot(h, UID)
    too_big = t("en", "photo_too_big", mb=limit // 2**20)
    # Telegram told us the size: refused before any download.
    await h.send(tools.photo_event(h, UID, big))
    await h.settle()
    assert tools.texts(h, UID)[-1] == too_big
    # No size given (or a lie): the download stops at the limit.
    for declared in (None, 100):
        await h.send(tools.photo_event(h, UID, big, size=declared, document=True))
        await h.settle()
        assert tools.texts(h, UID)[-1] == too_big
    assert tools.texts(h, UID).count(too_big) == 3
    assert await tools.snapshot(h, UID) == before


async def test_photo_over_the_pixel_limit_and_under_the_minimum(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness(max_photo_side=400)
    await one_photo_in(h, tools)  # 320x400: just inside
    before = await tools.snapshot(h, UID)
    await h.photo(UID, tools.jpeg("white", (401, 200)))
    await h.settle()
    await h.photo(UID, tools.jpeg("white", (40, 200)))
    await h.settle()
    assert tools.texts(h, UID)[-2:] == [
        t("en", "photo_too_large_pixels", side=400),
        t("en", "photo_too_small"),
    ]
    assert await tools.snapshot(h, UID) == before


async def test_photo_while_a_generation_runs(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    video = video_factory()
    video.gate.clear()
    h = await harness(video=video)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle(generations=False)
    assert (await tools.saved(UID))[0] == State.PROCESSING.value
    before = await tools.snapshot(h, UID)
    await h.photo(UID)
    await h.text(UID, "is it ready?")
    await h.settle(generations=False)
    assert tools.texts(h, UID)[-2:] == [t("en", "busy"), t("en", "busy")]
    assert await tools.snapshot(h, UID) == before
    video.gate.set()
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    assert await h.balance(UID) == 0


async def test_create_while_processing_is_refused(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    video = video_factory()
    video.gate.clear()
    h = await harness(video=video)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle(generations=False)
    before = await tools.snapshot(h, UID)
    await h.command(UID, "create")
    await h.press(UID, "create")
    await h.settle(generations=False)
    assert tools.texts(h, UID)[-2:] == [t("en", "busy"), t("en", "busy")]
    assert await tools.snapshot(h, UID) == before
    video.gate.set()
    await h.settle()
    assert await pool().fetchval('SELECT count(*) FROM generations WHERE "user" = $1', UID) == 1


async def test_a_third_photo(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    """Three photos in a row: the first two are the pair and the user is told so once (not
    "send the second one" and "I already have two"), one generation runs."""
    video = video_factory()
    video.gate.clear()
    h = await harness(video=video)
    await tools.to_photos(h, UID)
    for colour in ("red", "blue", "yellow"):
        await h.photo(UID, tools.jpeg(colour))
    await h.settle(generations=False)
    assert tools.texts(h, UID)[-1] == t("en", "photos_used_two", first=1, second=2, n=3)
    assert t("en", "photos_enough") not in tools.texts(h, UID)
    assert t("en", "photo_one_more") not in tools.texts(h, UID)
    state, _data = await tools.saved(UID)
    assert state == State.PROCESSING.value
    # and once it runs, a fourth is "busy"
    before = await tools.snapshot(h, UID)
    await h.photo(UID)
    await h.settle(generations=False)
    assert tools.texts(h, UID)[-1] == t("en", "busy")
    assert await tools.snapshot(h, UID) == before
    video.gate.set()
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    assert await pool().fetchval('SELECT count(*) FROM generations WHERE "user" = $1', UID) == 1


async def test_album_of_two_is_the_pair(harness: HarnessFactory, tools: EngineTools) -> None:
    h = await harness()
    await tools.to_photos(h, UID)
    await h.photo(UID, tools.jpeg("red"), media_group="album1")
    await h.photo(UID, tools.jpeg("blue"), media_group="album1")
    await h.settle()
    assert len(tools.calls(h, "send_video", UID)) == 1
    row = await pool().fetchrow("SELECT status, photo1_key, photo2_key FROM generations")
    assert row["status"] == "done" and row["photo1_key"] != row["photo2_key"]
    assert t("en", "photos_enough") not in tools.texts(h, UID)


async def test_style_button_from_an_old_picker_is_refused(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "create")
    await h.settle()
    await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    old = h.outbox.to(UID)[-1]
    await h.command(UID, "create")  # a second picker replaces the first
    await h.settle()
    new = h.outbox.to(UID)[-1]
    assert old.text == new.text == t("en", "pick_style", n=1) and old.message_id != new.message_id
    before = await tools.snapshot(h, UID)
    press = await h.press(UID, "style:hug", old.message_id)
    await h.settle()
    assert [a.text for a in tools.answers(h, press.callback_id)] == [t("en", "button_stale")]
    assert await tools.snapshot(h, UID) == before
    # The current picker works; pressing it twice does not pick twice.
    first = await h.press(UID, "style:dance", new.message_id)
    again = await h.press(UID, "style:hug", new.message_id)
    await h.settle()
    assert [a.text for a in tools.answers(h, first.callback_id)] == [""]
    assert [a.text for a in tools.answers(h, again.callback_id)] == [t("en", "button_stale")]
    assert (await tools.saved(UID))[1]["style"] == "dance"


FORGED = [
    "style:../../etc",
    "style:",
    "style:HUG",
    "buy:99",
    "buy:-1",
    "buy:1.0",
    "buy: 1",
    "buy:0x1",
    "video:abc",
    "video:-1",
    "video:99999999999999999999999",
    "lang:fr",
    "consent:yes",
    "nonsense",
    "",
    ":",
    "\x00\x01\x02\xff",
    "🙂" * 16,
    "x" * 64,
]


async def test_made_up_callback_data_is_refused(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.settle()
    before = await tools.snapshot(h, UID)
    for data in FORGED:
        sent_before = len(h.outbox.sent)
        press = await h.press(UID, data, h.outbox.to(UID)[-1].message_id)
        await h.settle()
        assert len(tools.answers(h, press.callback_id)) == 1, data  # the spinner always stops
        new = h.outbox.sent[sent_before:]
        assert all(s.method in ("answer_button", "send_text") for s in new), data
        for s in new:  # refused in words the user understands, never with a crash apology
            assert s.text in ("", t("en", "button_stale"), t("en", "video_gone")), (data, s.text)
        assert h.app.supervisor.crashes == 0, data
        assert await tools.snapshot(h, UID) == before, data
    assert await pool().fetchval("SELECT count(*) FROM orders") == 0
    assert tools.calls(h, "send_invoice") == tools.calls(h, "send_video") == []


@pytest.mark.parametrize("data", ["video:²", "buy:²", "video:¹²", "buy:³"])
async def test_superscript_digits_in_callback_data_do_not_crash_the_actor(
    harness: HarnessFactory, tools: EngineTools, data: str
) -> None:
    h = await harness()
    await h.command(UID, "start")
    await h.settle()
    press = await h.press(UID, data, h.outbox.to(UID)[-1].message_id)
    await h.settle()
    assert h.app.supervisor.crashes == 0
    assert t("en", "crash_sorry") not in tools.texts(h, UID)
    assert len(tools.answers(h, press.callback_id)) == 1


async def test_video_button_of_someone_elses_generation(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.make_video(OTHER)
    gen_id = await pool().fetchval('SELECT id FROM generations WHERE "user" = $1', OTHER)
    await h.command(UID, "start")
    await h.settle()
    before = await tools.snapshot(h, UID)
    press = await h.press(UID, f"video:{gen_id}")
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "video_gone")
    assert len(tools.answers(h, press.callback_id)) == 1
    assert tools.calls(h, "send_video", UID) == []
    assert await tools.snapshot(h, UID) == before


async def test_video_button_of_an_unfinished_generation(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    video = video_factory()
    video.gate.clear()
    h = await harness(video=video)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle(generations=False)
    gen_id = (await tools.saved(UID))[1]["generation_id"]
    await h.press(UID, f"video:{gen_id}")
    await h.settle(generations=False)
    assert tools.texts(h, UID)[-1] == t("en", "video_gone")
    assert tools.calls(h, "send_video", UID) == []
    video.gate.set()
    await h.settle()


async def test_the_same_update_twice_is_handled_once(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    create = await h.command(UID, "create")
    await h.send(create)
    await h.settle()
    assert tools.texts(h, UID) == [t("en", "consent_ask", terms=h.settings.terms_text)]
    consent = await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.send(consent)
    await h.settle()
    assert len(tools.answers(h, consent.callback_id)) == 1
    assert tools.texts(h, UID)[-1] == t("en", "pick_style", n=1)
    assert tools.texts(h, UID).count(t("en", "pick_style", n=1)) == 1
    await h.pick_style(UID)
    await h.settle()
    photo = tools.photo_event(h, UID)
    await h.send(photo)
    await h.send(photo)
    await h.settle()
    await h.send(photo)  # redelivered later, too
    await h.settle()
    state, data = await tools.saved(UID)
    assert state == State.WAITING_FOR_PHOTOS.value and len(data["photos"]) == 1
    assert tools.texts(h, UID).count(t("en", "photo_one_more")) == 1
    assert await h.balance(UID) == 1


async def test_a_flood_gets_one_slow_down_and_the_rest_is_handled(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness(mailbox_size=8)
    for _ in range(20):
        await h.command(UID, "balance")
    await h.settle()
    replies = tools.texts(h, UID)
    assert replies.count(t("en", "slow_down")) == 1
    assert replies.count(t("en", "balance", n=1)) == 8


async def test_slow_down_speaks_the_language_the_user_chose_not_telegrams(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness(mailbox_size=8)
    await h.command(UID, "language")
    await h.settle()
    await h.press(UID, "lang:uk", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    for _ in range(20):  # Telegram's language_code for this user stays "en"
        await h.command(UID, "balance")
    await h.settle()
    replies = tools.texts(h, UID)
    assert replies.count(t("uk", "slow_down")) == 1 and t("en", "slow_down") not in replies
    assert replies.count(t("uk", "balance", n=1)) == 8


async def test_group_messages_get_one_private_only_notice(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    for n in range(3):
        await h.app.dispatch(ev.GroupMessage(-100123, f"g{n}"))
    await h.settle()
    assert tools.texts(h, -100123) == [t("en", "private_only")]
    assert await pool().fetchval("SELECT count(*) FROM users") == 0


async def test_photo_before_the_style_is_picked(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "create")
    await h.settle()
    await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    before = await tools.snapshot(h, UID)
    await h.photo(UID)
    await h.settle()
    assert await tools.snapshot(h, UID) == before
    assert tools.texts(h, UID)[-1] in (t("en", "hint_create"), t("en", "expect_style"))


async def test_photo_before_the_style_is_picked_asks_for_the_style(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "create")
    await h.settle()
    await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    await h.photo(UID)
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "expect_style")


async def test_photo_sent_before_a_cancel_does_not_count_in_the_next_conversation(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    held = tools.HeldOutbox()
    h = await harness(outbox=held)
    await tools.to_photos(h, UID)
    slow = tools.photo_event(h, UID, tools.jpeg("black"))
    gate = held.hold(slow.photo.file_id)  # its download hangs, like a slow network
    await h.send(slow)
    await tools.quiet(h)
    await h.command(UID, "cancel")
    await tools.quiet(h)
    assert tools.texts(h, UID)[-1] == t("en", "canceled")
    await h.command(UID, "create")
    await tools.quiet(h)
    await h.pick_style(UID)
    await tools.quiet(h)
    fresh = [tools.photo_event(h, UID, tools.jpeg(c)) for c in ("red", "blue")]
    for photo in fresh:
        await h.send(photo)
    await tools.quiet(h)
    gate.set()  # the old download finally completes
    await h.settle()
    assert t("en", "photos_enough") not in tools.texts(h, UID)
    row = await pool().fetchrow("SELECT photo1_key, photo2_key FROM generations")
    assert row is not None, "no generation started from the two new photos"
    used = row["photo1_key"] + row["photo2_key"]
    assert slow.photo.file_unique_id not in used
    assert all(p.photo.file_unique_id in used for p in fresh)
