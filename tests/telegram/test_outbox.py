"""The outbox against the offline Telegram: what goes out on the wire, and what comes back."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from flick.events import Photo
from flick.media import VideoInfo, VideoMeta
from flick.ports import Button, Outbox, RecipientGone, RecipientUnreachable
from flick.telegram.adapter import TelegramAdapter
from flick.telegram.outbox import TelegramOutbox
from flick.testing.memory import MemoryStorage
from flick.testing.telegram import OfflineTelegram, errors, raw

SendMessage = raw.functions.messages.SendMessage
SendMedia = raw.functions.messages.SendMedia
EditMessage = raw.functions.messages.EditMessage
#: These tests send random bytes as videos: their size and length are given, not probed.
NOT_PROBED = VideoMeta(VideoInfo(width=64, height=64, duration=1.0))
SAVE_PARTS = (raw.functions.upload.SaveFilePart, raw.functions.upload.SaveBigFilePart)


async def test_send_text_is_plain_and_returns_the_message_id(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    alice = tg.user(1001)
    first = await outbox.send_text(alice.id, "Hi *Alice* <b>!</b> https://example.com")
    second = await outbox.send_text(alice.id, "again")
    assert second > first
    (sent, _) = tg.sent(SendMessage, alice.id)
    assert sent.request.message == "Hi *Alice* <b>!</b> https://example.com"
    assert not sent.request.entities  # no markdown/HTML parsing
    assert sent.request.no_webpage  # no link previews
    assert tg.texts_to(alice.id) == ["Hi *Alice* <b>!</b> https://example.com", "again"]


async def test_keyboard_with_callback_and_url_buttons(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    alice = tg.user(1001)
    keyboard = (
        (Button("Hug", data="style:hug"), Button("Kiss", data="style:kiss")),
        (Button("Terms", url="https://example.com/terms"),),
    )
    message_id = await outbox.send_text(alice.id, "Pick a style", keyboard)
    (sent,) = tg.sent(SendMessage, alice.id)
    assert tg.buttons(sent) == [
        [("Hug", "style:hug"), ("Kiss", "style:kiss")],
        [("Terms", "https://example.com/terms")],
    ]
    assert message_id == tg.server.messages[message_id].id


async def test_callback_data_over_64_bytes_is_refused_before_sending(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        await outbox.send_text(tg.user(1001).id, "x", ((Button("Too long", data="x" * 65),),))
    assert tg.requests == []


async def test_edit_text(tg: OfflineTelegram, outbox: TelegramOutbox) -> None:
    alice = tg.user(1001)
    message_id = await outbox.send_text(alice.id, "Rendering… 10%")
    await outbox.edit_text(alice.id, message_id, "Rendering… 50%", ((Button("Cancel", data="c"),),))
    await outbox.edit_text(alice.id, message_id, "Rendering… 50%", ((Button("Cancel", data="c"),),))
    await outbox.edit_text(alice.id, 999_999, "gone")  # the user deleted it
    edits = tg.sent(EditMessage, alice.id)
    assert [e.request.message for e in edits] == ["Rendering… 50%"]
    assert tg.buttons(edits[0]) == [[("Cancel", "c")]]
    assert {type(e.error).__name__ for e in tg.sent(EditMessage, ok=False)} == {
        "MessageNotModified",
        "MessageIdInvalid",
    }
    assert tg.server.messages[message_id].message == "Rendering… 50%"


async def test_answer_button(tg: OfflineTelegram, outbox: TelegramOutbox) -> None:
    await outbox.answer_button("12345", "Saved", alert=True)
    await outbox.answer_button("12346")
    first, second = tg.sent(raw.functions.messages.SetBotCallbackAnswer)
    assert (first.request.query_id, first.request.message, first.request.alert) == (
        12345,
        "Saved",
        True,
    )
    assert (second.request.message, bool(second.request.alert)) == (None, False)


async def test_late_button_answer_is_not_an_error(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    tg.fail_next(raw.functions.messages.SetBotCallbackAnswer, errors.QueryIdInvalid)
    await outbox.answer_button("1")  # returns: nothing to raise, nothing to retry

    (late,) = tg.sent(raw.functions.messages.SetBotCallbackAnswer, ok=None)
    assert isinstance(late.error, errors.QueryIdInvalid) and late.request.query_id == 1
    await outbox.answer_button("2")  # and the outbox answers the next one
    assert [e.request.query_id for e in tg.sent(raw.functions.messages.SetBotCallbackAnswer)] == [2]


async def test_invoice_in_stars(tg: OfflineTelegram, outbox: TelegramOutbox) -> None:
    alice = tg.user(1001)
    message_id = await outbox.send_invoice(
        alice.id,
        title="5 credits",
        description="Five videos",
        payload="order:42",
        currency="XTR",
        amount=225,
        label="5 credits",
    )
    (sent,) = tg.sent(SendMedia, alice.id)
    media = sent.request.media
    assert isinstance(media, raw.types.InputMediaInvoice)
    assert media.invoice.currency == "XTR" and media.provider == ""
    assert [(p.label, p.amount) for p in media.invoice.prices] == [("5 credits", 225)]
    assert (media.title, media.description, media.payload) == (
        "5 credits",
        "Five videos",
        b"order:42",
    )
    assert tg.sent_media[-1].kind == "invoice" and tg.sent_media[-1].message_id == message_id


async def test_pre_checkout_answers(tg: OfflineTelegram, outbox: TelegramOutbox) -> None:
    await outbox.answer_pre_checkout("111", True)
    await outbox.answer_pre_checkout("222", False, "This offer has expired")
    await outbox.answer_pre_checkout("333", False)
    answers = [e.request for e in tg.sent(raw.functions.messages.SetBotPrecheckoutResults)]
    assert [(a.query_id, bool(a.success), a.error) for a in answers] == [
        (111, True, None),
        (222, False, "This offer has expired"),
        (333, False, "This purchase cannot be completed right now."),
    ]


async def test_late_pre_checkout_answer_is_not_an_error(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    tg.fail_next(raw.functions.messages.SetBotPrecheckoutResults, errors.QueryIdInvalid)
    await outbox.answer_pre_checkout("1", True)  # returns: nothing to raise, nothing to retry

    (late,) = tg.sent(raw.functions.messages.SetBotPrecheckoutResults, ok=None)
    assert isinstance(late.error, errors.QueryIdInvalid) and late.request.query_id == 1
    await outbox.answer_pre_checkout("2", True)
    (answered,) = tg.sent(raw.functions.messages.SetBotPrecheckoutResults)
    assert answered.request.query_id == 2 and answered.request.success


async def test_pre_checkout_answer_rides_out_a_short_flood_wait(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    tg.fail_next(raw.functions.messages.SetBotPrecheckoutResults, errors.FloodWait(value=1))
    await outbox.answer_pre_checkout("111", True)
    assert len(tg.sent(raw.functions.messages.SetBotPrecheckoutResults)) == 1


async def test_send_video_uploads_the_stored_bytes_then_reuses_the_file_id(
    tg: OfflineTelegram, outbox: TelegramOutbox, memory_storage: MemoryStorage, tmp_path: Path
) -> None:
    alice = tg.user(1001)
    video = os.urandom(1_300_000)  # three upload parts
    await memory_storage.put("videos/1001/1_hug.mp4", video, "video/mp4")
    keyboard = ((Button("Another", data="create"),),)
    file_id = await outbox.send_video(
        alice.id, "videos/1001/1_hug.mp4", "Your hug", keyboard, meta=NOT_PROBED
    )

    (sent,) = tg.sent(SendMedia, alice.id)
    media = sent.request.media
    assert isinstance(media, raw.types.InputMediaUploadedDocument)
    (video_attr,) = [a for a in media.attributes if isinstance(a, raw.types.DocumentAttributeVideo)]
    assert video_attr.supports_streaming and media.mime_type == "video/mp4"
    assert sent.request.message == "Your hug" and tg.buttons(sent) == [[("Another", "create")]]
    assert tg.uploaded_files[media.file.id] == video
    assert tg.sent_videos() == [video]
    assert file_id and not list((tmp_path / "spool").iterdir())  # temporary file removed

    parts_before = len(tg.sent(SAVE_PARTS))
    again = await outbox.send_video(alice.id, "videos/1001/1_hug.mp4", "Again", file_id=file_id)
    assert len(tg.sent(SAVE_PARTS)) == parts_before
    assert isinstance(tg.sent(SendMedia)[-1].request.media, raw.types.InputMediaDocument)
    assert again == file_id and tg.sent_videos() == [video, video]


async def test_send_video_uploads_a_local_copy_without_reading_storage(
    tg: OfflineTelegram, outbox: TelegramOutbox, tmp_path: Path
) -> None:
    alice = tg.user(1001)
    video = os.urandom(1_300_000)
    local = tmp_path / "flick-video-1.mp4"
    local.write_bytes(video)
    # Nothing under this key in storage: the upload must come from the local file.
    file_id = await outbox.send_video(
        alice.id, "videos/1001/2_kiss.mp4", "Kiss", local_path=local, meta=NOT_PROBED
    )

    (sent,) = tg.sent(SendMedia, alice.id)
    assert tg.uploaded_files[sent.request.media.file.id] == video
    assert file_id and tg.sent_videos() == [video]
    assert local.read_bytes() == video  # the caller's file: theirs to delete
    assert not (tmp_path / "spool").exists() or not list((tmp_path / "spool").iterdir())


async def test_big_video_goes_up_in_big_parts(
    tg: OfflineTelegram, outbox: TelegramOutbox, memory_storage: MemoryStorage
) -> None:
    video = os.urandom(10 * 1024 * 1024 + 12345)  # over kurigram's 10 MB "big file" line
    await memory_storage.put("videos/1/big.mp4", video, "video/mp4")
    await outbox.send_video(tg.user(1001).id, "videos/1/big.mp4", "Big", meta=NOT_PROBED)
    assert tg.sent(raw.functions.upload.SaveBigFilePart)
    assert hashlib.sha256(tg.sent_videos()[0]).digest() == hashlib.sha256(video).digest()


async def test_stale_file_id_falls_back_to_upload(
    tg: OfflineTelegram, outbox: TelegramOutbox, memory_storage: MemoryStorage
) -> None:
    alice = tg.user(1001)
    await memory_storage.put("videos/1/a.mp4", b"\x00\x00\x00\x18ftypmp42" * 100, "video/mp4")
    first = await outbox.send_video(alice.id, "videos/1/a.mp4", "v", meta=NOT_PROBED)
    tg.fail_next(SendMedia, errors.FileReferenceExpired)
    second = await outbox.send_video(
        alice.id, "videos/1/a.mp4", "v", file_id=first, meta=NOT_PROBED
    )
    assert second != first and len(tg.sent_videos()) == 2
    second_again = await outbox.send_video(
        alice.id, "videos/1/a.mp4", "v", file_id="garbage", meta=NOT_PROBED
    )
    assert second_again and len(tg.sent_videos()) == 3


async def test_download_streams_the_photo_the_user_sent(
    tg: OfflineTelegram, outbox: TelegramOutbox, adapter: TelegramAdapter, events: list[object]
) -> None:
    alice = tg.user(1001)
    data = os.urandom(2 * 1024 * 1024 + 4321)  # three 1 MB chunks
    await tg.push(tg.photo(alice, data, size=(3000, 2000)))
    await tg.push(tg.document(alice, data[:70_000], mime_type="image/png", file_name="a.png"))
    photo, document = events
    assert isinstance(photo, Photo) and isinstance(document, Photo)
    chunks = [chunk async for chunk in outbox.download(photo.photo)]
    assert b"".join(chunks) == data and len(chunks) == 3
    assert b"".join([c async for c in outbox.download(document.photo)]) == data[:70_000]


async def test_flood_wait_delays_only_that_chat(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    alice, bob = tg.user(1001, "Alice"), tg.user(1002, "Bob")
    tg.fail_next(SendMessage, errors.FloodWait(value=2), chat_id=alice.id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    done: dict[str, float] = {}

    async def send(chat_id: int, text: str) -> None:
        await outbox.send_text(chat_id, text)
        done[text] = loop.time() - started

    await asyncio.gather(send(alice.id, "A1"), send(alice.id, "A2"), send(bob.id, "B1"))
    delivered = [e.request.message for e in tg.sent(SendMessage)]
    assert delivered == ["B1", "A1", "A2"]  # Bob did not wait for Alice's flood wait
    assert tg.texts_to(alice.id) == ["A1", "A2"]  # Alice's order kept
    assert [e.request.message for e in tg.sent(SendMessage, ok=False)] == ["A1"]
    assert done["B1"] < 1.0 <= done["A1"] <= done["A2"]
    assert outbox.pacer.flood_waits == 1


@pytest.mark.parametrize("error", [errors.UserIsBlocked, errors.InputUserDeactivated])
async def test_gone_recipients(
    tg: OfflineTelegram, outbox: TelegramOutbox, error: type[Exception]
) -> None:
    alice = tg.user(1001)
    tg.fail_next(SendMessage, error, chat_id=alice.id)
    with pytest.raises(RecipientGone):
        await outbox.send_text(alice.id, "hello?")
    assert outbox.gone == 1


async def test_blocked_user_and_unknown_user(tg: OfflineTelegram, outbox: TelegramOutbox) -> None:
    alice = tg.user(1001)
    tg.block(alice.id)
    with pytest.raises(RecipientGone):
        await outbox.send_text(alice.id, "hello?")
    (failed,) = tg.sent(SendMessage, ok=False)
    assert type(failed.error).__name__ == "UserIsBlocked403"
    with pytest.raises(RecipientUnreachable):
        await outbox.send_text(5555, "who?")  # never seen: Telegram does not know them either
    assert outbox.gone == 1


async def test_peer_id_invalid_is_unreachable_not_gone(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    """PEER_ID_INVALID: the client cannot address the user (no access hash: a lost session
    file), which says nothing about a block. Answered by Telegram or raised by kurigram itself
    when `resolve_peer` finds the user neither in its peer cache nor through users.getUsers."""
    alice = tg.user(1001)
    tg.fail_next(SendMessage, errors.PeerIdInvalid, chat_id=alice.id)
    with pytest.raises(RecipientUnreachable) as answered:
        await outbox.send_text(alice.id, "hello?")
    assert not isinstance(answered.value, RecipientGone)
    assert await outbox.send_text(alice.id, "hello again") > 0  # nothing stuck on her chat

    lost = tg.user(1002)
    await outbox.send_text(lost.id, "hi")  # known to the client now
    peers: Any = tg.client.storage  # a lost session file: kurigram forgets the access hash
    peers.conn.execute("DELETE FROM peers WHERE id = ?", (lost.id,))
    del tg.server.users[lost.id]  # and Telegram does not resolve it from a bare id either
    with pytest.raises(RecipientUnreachable) as resolved:
        await outbox.send_text(lost.id, "still there?")
    assert isinstance(resolved.value.__cause__, errors.PeerIdInvalid)
    assert not any(  # kurigram gave up before sending anything
        isinstance(e.request, SendMessage) and e.chat_id == lost.id and e.error is not None
        for e in tg.exchanges
    )
    with pytest.raises(RecipientUnreachable) as shapeless:
        await outbox.send_text(0, "no such chat")  # an id of no possible shape: before any RPC
    assert isinstance(shapeless.value.__cause__, ValueError)
    assert (outbox.gone, outbox.unreachable) == (0, 3)


async def test_network_errors_reach_the_caller(tg: OfflineTelegram, outbox: TelegramOutbox) -> None:
    tg.fail_next(SendMessage, TimeoutError)
    with pytest.raises(TimeoutError):
        await outbox.send_text(tg.user(1001).id, "hello")


async def test_refund_twice(tg: OfflineTelegram, outbox: TelegramOutbox) -> None:
    alice = tg.user(1001)
    assert await outbox.refund_star_payment(alice.id, "stxABC") is True
    assert await outbox.refund_star_payment(alice.id, "stxABC") is False
    first, second = tg.sent(raw.functions.payments.RefundStarsCharge, ok=None)
    assert first.request.charge_id == "stxABC" and first.chat_id == alice.id and first.ok
    assert type(second.error).__name__ == "ChargeAlreadyRefunded"


async def test_outbox_must_be_running(tg: OfflineTelegram, memory_storage: MemoryStorage) -> None:
    outbox = TelegramOutbox(tg.client, memory_storage)
    with pytest.raises(RuntimeError, match="not running"):
        await outbox.send_text(1, "x")
    async with outbox:
        await outbox.send_text(tg.user(1001).id, "x")
    with pytest.raises(RuntimeError):
        await outbox.answer_pre_checkout("1", True)


def test_it_is_the_engines_outbox(outbox: TelegramOutbox) -> None:
    port: Outbox = outbox  # mypy checks the signatures against flick.ports.Outbox
    assert port is outbox


async def test_button_press_under_a_sent_keyboard_asks_telegram_for_no_message(
    tg: OfflineTelegram, outbox: TelegramOutbox, adapter: TelegramAdapter, events: list[Any]
) -> None:
    """kurigram looks a pressed button's message up in its cache, else asks Telegram for it
    (one request per press): the outbox leaves each keyboard message it sends in that cache."""
    alice = tg.user(1001)
    message_id = await outbox.send_text(alice.id, "Pick a style", ((Button("Hug", "style:hug"),),))
    await tg.push(tg.callback(alice, "style:hug", message_id=message_id))
    (event,) = events
    assert event.message_id == message_id and event.data == "style:hug"
    assert not tg.sent(raw.functions.messages.GetMessages, ok=None)
