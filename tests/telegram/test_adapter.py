"""Raw updates in, engine events out: through kurigram's own parsing, every kind of input."""

from __future__ import annotations

import io
from typing import Any

import pytest
from loguru import logger
from PIL import Image

from flick.events import (
    ButtonPress,
    Command,
    Event,
    GroupMessage,
    PaymentRefunded,
    PaymentSucceeded,
    Photo,
    PreCheckout,
    Text,
    Unsupported,
    UserInfo,
)
from flick.telegram.adapter import TelegramAdapter
from flick.testing.telegram import OfflineTelegram, raw

Events = list[Event | GroupMessage]
pytestmark = pytest.mark.usefixtures("adapter")


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 80)).save(out, "JPEG")
    return out.getvalue()


async def test_text_and_user_info(tg: OfflineTelegram, events: Events) -> None:
    alice = tg.user(1001, "Alice", username="alice", language_code="ru")
    await tg.push(tg.text(alice, "hello there"))
    assert events == [
        Text(
            user=UserInfo(1001, 1001, "alice", "Alice", "ru"),
            event_id=events[0].event_id,
            text="hello there",
        )
    ]
    assert events[0].event_id.startswith("m")


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("/start", "start", ""),
        ("/Start ref42", "start", "ref42"),
        ("/buy@flick_test_bot", "buy", ""),
        ("/BUY@Flick_Test_Bot  5 credits ", "buy", "5 credits"),
        ("/language@some_other_bot ru", "language", "ru"),
    ],
)
async def test_commands(
    tg: OfflineTelegram, events: Events, text: str, name: str, args: str
) -> None:
    alice = tg.user(1001)
    await tg.push(tg.text(alice, text))
    (event,) = events
    assert isinstance(event, Command)
    assert (event.name, event.args) == (name, args)


async def test_command_builder_with_entity_and_mention(tg: OfflineTelegram, events: Events) -> None:
    alice = tg.user(1001)
    await tg.push(tg.command(alice, "create", "hug", mention=True))
    assert [(e.name, e.args) for e in events if isinstance(e, Command)] == [("create", "hug")]


@pytest.mark.parametrize("text", ["/", "/ start", "path/to", "/ü", "/" + "x" * 40])
async def test_not_commands_are_text(tg: OfflineTelegram, events: Events, text: str) -> None:
    await tg.push(tg.text(tg.user(1001), text))
    assert [type(e) for e in events] == [Text]


async def test_photo_gives_the_largest_size(tg: OfflineTelegram, events: Events) -> None:
    alice = tg.user(1001)
    data = jpeg(1600, 1200)
    await tg.push(tg.photo(alice, data))
    (event,) = events
    assert isinstance(event, Photo)
    assert (event.photo.width, event.photo.height, event.photo.size) == (1600, 1200, len(data))
    assert not event.photo.as_document and event.media_group_id is None
    assert event.photo.file_id and event.photo.file_unique_id


async def test_album_keeps_its_group(tg: OfflineTelegram, events: Events) -> None:
    alice = tg.user(1001)
    await tg.push(tg.album(alice, [jpeg(640, 480), jpeg(480, 640)]))
    assert [type(e) for e in events] == [Photo, Photo]
    first, second = events
    assert isinstance(first, Photo) and isinstance(second, Photo)
    assert first.media_group_id is not None and first.media_group_id == second.media_group_id
    assert first.event_id != second.event_id
    assert first.photo.file_unique_id != second.photo.file_unique_id


@pytest.mark.parametrize(
    ("mime", "name", "expected"),
    [
        ("image/jpeg", "me.jpg", "photo"),
        ("image/png", "me.png", "photo"),
        ("image/webp", "me.webp", "photo"),
        ("image/heic", "IMG_0001.HEIC", "photo"),
        ("application/octet-stream", "me.jpg", "photo"),
        ("application/pdf", "cv.pdf", "document"),
        ("application/zip", "photos.zip", "document"),
    ],
)
async def test_documents(
    tg: OfflineTelegram, events: Events, mime: str, name: str, expected: str
) -> None:
    data = jpeg(800, 600)
    await tg.push(tg.document(tg.user(1001), data, mime_type=mime, file_name=name))
    (event,) = events
    if expected == "photo":
        assert isinstance(event, Photo)
        assert event.photo.as_document and event.photo.mime_type == mime
        assert event.photo.size == len(data)
    else:
        assert isinstance(event, Unsupported) and event.kind == "document"


@pytest.mark.parametrize(
    "kind",
    [
        "sticker",
        "voice",
        "video",
        "video_note",
        "audio",
        "animation",
        "location",
        "contact",
        "dice",
    ],
)
async def test_unsupported_media(tg: OfflineTelegram, events: Events, kind: str) -> None:
    await tg.push(tg.media(tg.user(1001), kind))
    (event,) = events
    assert isinstance(event, Unsupported) and event.kind == kind


async def test_groups_and_channels_answered_once_by_the_engine(
    tg: OfflineTelegram, events: Events
) -> None:
    alice = tg.user(1001)
    group = tg.group(kind="group")
    await tg.push(tg.group_text(alice, "/start", chat=group))
    await tg.push(tg.group_text(alice, "hi", kind="supergroup"))
    await tg.push(tg.group_text(None, "a post", kind="channel"))
    assert [type(e) for e in events] == [GroupMessage] * 3
    assert events[0] == GroupMessage(chat_id=-group.id, event_id=events[0].event_id)
    assert all(isinstance(e, GroupMessage) and e.chat_id < 0 for e in events)


async def test_inputs_that_are_dropped(tg: OfflineTelegram, events: Events) -> None:
    alice = tg.user(1001)
    other_bot = tg.user(2002, "Other", username="other_bot", bot=True)
    original = tg.text(alice, "first version")
    await tg.push(tg.text(other_bot, "/start"))  # a bot in private
    await tg.push(tg.group_text(other_bot, "/start"))  # a bot in a group
    await tg.push(tg.edited(original, "second version"))  # an edit
    await tg.push(tg.anonymous(alice, "who am I"))  # no sender
    await tg.push(tg.message(alice, ""))  # nothing in it
    assert events == []


async def test_unknown_updates_do_no_harm(
    tg: OfflineTelegram, events: Events, adapter: TelegramAdapter
) -> None:
    alice = tg.user(1001)
    await tg.push_raw(
        raw.types.UpdateShort(
            update=raw.types.UpdateUserTyping(
                user_id=alice.id, action=raw.types.SendMessageTypingAction()
            ),
            date=0,
        )
    )
    pin = raw.types.MessageActionPinMessage()
    await tg.push(tg.service(alice, pin))
    await tg.push(tg.text(alice, "still alive"))
    assert [type(e) for e in events] == [Text]
    assert adapter.failed == 0


async def test_button_press(tg: OfflineTelegram, events: Events) -> None:
    alice = tg.user(1001)
    await tg.push(tg.callback(alice, "style:hug", message_id=77))
    (event,) = events
    assert isinstance(event, ButtonPress)
    assert (event.data, event.message_id) == ("style:hug", 77)
    assert event.event_id == f"c{event.callback_id}" and event.user.chat_id == 1001


async def test_button_press_with_bytes_that_are_not_text(
    tg: OfflineTelegram, events: Events
) -> None:
    await tg.push(tg.callback(tg.user(1001), b"\xff\xfe\x00evil", message_id=5))
    (event,) = events
    assert isinstance(event, ButtonPress) and event.data.endswith("evil")


@pytest.mark.parametrize(("currency", "amount"), [("XTR", 50), ("USD", 499)])
async def test_pre_checkout_of_any_currency_reaches_the_engine(
    tg: OfflineTelegram, events: Events, currency: str, amount: int
) -> None:
    await tg.push(
        tg.pre_checkout(tg.user(1001), payload="order:7", total_amount=amount, currency=currency)
    )
    (event,) = events
    assert isinstance(event, PreCheckout)
    assert (event.currency, event.total_amount, event.payload) == (currency, amount, "order:7")
    assert event.event_id == f"q{event.query_id}"


async def test_payment_and_its_redelivery_have_one_event_id(
    tg: OfflineTelegram, events: Events
) -> None:
    alice = tg.user(1001)
    paid = tg.payment(alice, payload="order:7", total_amount=225, charge_id="stxABC")
    await tg.push(paid)
    await tg.push(paid)
    assert events[0] == events[1]
    event = events[0]
    assert isinstance(event, PaymentSucceeded)
    assert event.event_id == "pay:stxABC"
    assert (event.charge_id, event.currency, event.total_amount, event.payload) == (
        "stxABC",
        "XTR",
        225,
        "order:7",
    )


async def test_refund(tg: OfflineTelegram, events: Events) -> None:
    await tg.push(tg.refund(tg.user(1001), charge_id="stxABC", total_amount=225, payload="order:7"))
    (event,) = events
    assert isinstance(event, PaymentRefunded)
    assert (event.charge_id, event.total_amount, event.payload) == ("stxABC", 225, "order:7")
    assert event.event_id == "refund:stxABC"


async def test_a_failing_dispatch_is_logged_and_contained(tg: OfflineTelegram) -> None:
    seen: list[Any] = []

    async def explode(event: Event | GroupMessage) -> None:
        seen.append(event)
        if isinstance(event, Text) and event.text == "boom":
            raise RuntimeError("engine bug")

    adapter = TelegramAdapter(tg.client, explode, group=1)
    adapter.install()
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message} {extra}")
    try:
        alice = tg.user(1001)
        await tg.push(tg.text(alice, "boom"))
        await tg.push(tg.text(alice, "after"))
    finally:
        logger.remove(sink)
    assert adapter.failed == 1 and adapter.dispatched == 1
    assert [e.text for e in seen if isinstance(e, Text)] == ["boom", "after"]
    assert any("from user 1001 failed" in line for line in lines)
    assert "engine bug" in "".join(lines)  # with its traceback


async def test_updates_reach_the_engine_in_the_order_sent(
    tg: OfflineTelegram, events: Events
) -> None:
    alice, bob = tg.user(1001), tg.user(1002, "Bob")
    await tg.push(
        tg.command(alice, "create"),
        tg.photo(alice, jpeg(320, 240)),
        tg.text(bob, "hi"),
        tg.photo(alice, jpeg(240, 320)),
        tg.command(alice, "cancel"),
    )
    assert [(e.user.user_id, type(e).__name__) for e in events if isinstance(e, Event)] == [
        (1001, "Command"),
        (1001, "Photo"),
        (1002, "Text"),
        (1001, "Photo"),
        (1001, "Command"),
    ]
