"""What the Outbox port promises, kept by both implementations: the recording outbox the engine
tests use (flick.testing.memory) and the Telegram outbox (flick.telegram.outbox) over the offline
Telegram, where kurigram sends real MTProto requests and parses real answers.

Telegram's own behaviour (pacing, flood waits, upload parts, errors by name) is in
tests/telegram/test_outbox.py; here is only what the engine may count on from any outbox.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from flick.events import Event, GroupMessage, Photo, PhotoRef
from flick.ports import Button, Outbox, RecipientGone
from flick.telegram.adapter import TelegramAdapter
from flick.telegram.outbox import TelegramOutbox
from flick.testing.engine import make_jpeg
from flick.testing.media_files import make_video
from flick.testing.memory import MemoryStorage, RecordingOutbox
from flick.testing.telegram import OfflineTelegram

ALICE, BOB = 1001, 1002


def _real_video() -> bytes:
    """A real, tiny H.264 MP4: the Telegram outbox probes what it uploads and refuses anything
    else (flick.media), so the contract is written against a video both accept."""
    with tempfile.TemporaryDirectory() as folder:
        return make_video(Path(folder) / "contract.mp4", seconds=0.5).read_bytes()


VIDEO = _real_video()


@dataclass
class Subject:
    """One outbox, and what a test needs around it, the same way for each implementation."""

    outbox: Outbox
    storage: MemoryStorage  # where stored videos are read from
    block: Callable[[int], None]  # the user blocks the bot
    photo: Callable[[int, bytes], Awaitable[PhotoRef]]  # the user sends a photo


async def recording() -> AsyncIterator[Subject]:
    outbox = RecordingOutbox()

    async def photo(uid: int, data: bytes) -> PhotoRef:
        file_id = f"photo{len(outbox.files)}"
        outbox.files[file_id] = data
        return PhotoRef(file_id, f"u{file_id}", len(data))

    yield Subject(outbox, MemoryStorage(), outbox.blocked.add, photo)


async def telegram(tmp_path: Path) -> AsyncIterator[Subject]:
    storage = MemoryStorage()
    async with OfflineTelegram() as tg:
        for uid in (ALICE, BOB):
            tg.user(uid)
        received: list[Event | GroupMessage] = []

        async def collect(event: Event | GroupMessage) -> None:
            received.append(event)

        TelegramAdapter(tg.client, collect).install()

        async def photo(uid: int, data: bytes) -> PhotoRef:
            await tg.push(tg.photo(tg.user(uid), data))
            event = received[-1]
            assert isinstance(event, Photo)
            return event.photo

        async with TelegramOutbox(tg.client, storage, tmp_dir=tmp_path / "spool") as outbox:
            yield Subject(outbox, storage, tg.block, photo)
        tg.assert_faults_used()


@pytest.fixture(params=["recording", "telegram"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    made = recording() if request.param == "recording" else telegram(tmp_path)
    async for one in made:
        yield one


async def test_messages_get_increasing_ids(subject: Subject) -> None:
    out = subject.outbox
    first = await out.send_text(ALICE, "one", ((Button("Go", data="go"),),))
    second = await out.send_text(ALICE, "two")
    invoice = await out.send_invoice(
        ALICE,
        title="5 credits",
        description="Five videos",
        payload="order:1",
        currency="XTR",
        amount=225,
        label="5 credits",
    )
    assert first < second < invoice


async def test_edits_and_answers_return_even_when_the_message_is_gone(subject: Subject) -> None:
    out = subject.outbox
    message_id = await out.send_text(ALICE, "Rendering… 10%")
    await out.edit_text(ALICE, message_id, "Rendering… 50%")
    await out.edit_text(ALICE, message_id, "Rendering… 50%")  # not modified
    await out.edit_text(ALICE, 999_999, "the user deleted it")
    await out.answer_button("12345", "Saved", alert=True)
    await out.answer_pre_checkout("111", True)
    await out.answer_pre_checkout("222", False, "This offer has expired")
    assert await out.send_text(ALICE, "nothing above raised") > message_id


async def test_a_stored_video_is_sent_and_its_file_id_sends_it_again(subject: Subject) -> None:
    await subject.storage.put("videos/1001/1_hug.mp4", VIDEO, "video/mp4")
    out = subject.outbox
    file_id = await out.send_video(ALICE, "videos/1001/1_hug.mp4", "Your hug")
    assert isinstance(file_id, str) and file_id
    again = await out.send_video(BOB, "videos/1001/1_hug.mp4", "For Bob", file_id=file_id)
    assert again == file_id


async def test_a_local_copy_is_sent_and_stays_the_callers(subject: Subject, tmp_path: Path) -> None:
    local = tmp_path / "flick-video-1.mp4"
    local.write_bytes(VIDEO)
    file_id = await subject.outbox.send_video(ALICE, "videos/1001/2.mp4", "Kiss", local_path=local)
    assert file_id and local.read_bytes() == VIDEO


async def test_download_gives_back_the_bytes_the_user_sent(subject: Subject) -> None:
    data = make_jpeg("green", (900, 1200)) + os.urandom(1_500_000)  # more than one chunk
    photo = await subject.photo(ALICE, data)
    chunks = [chunk async for chunk in subject.outbox.download(photo)]
    assert all(chunks) and b"".join(chunks) == data


async def test_a_user_who_blocked_the_bot_is_recipient_gone(subject: Subject) -> None:
    await subject.storage.put("videos/1001/3.mp4", VIDEO, "video/mp4")
    subject.block(ALICE)
    with pytest.raises(RecipientGone):
        await subject.outbox.send_text(ALICE, "hello?")
    with pytest.raises(RecipientGone):
        await subject.outbox.send_video(ALICE, "videos/1001/3.mp4", "Your video")
    assert await subject.outbox.send_text(BOB, "others still get theirs") > 0


async def test_a_charge_is_refunded_once(subject: Subject) -> None:
    assert await subject.outbox.refund_star_payment(ALICE, "stxABC") is True
    assert await subject.outbox.refund_star_payment(ALICE, "stxABC") is False
    assert await subject.outbox.refund_star_payment(ALICE, "stxDEF") is True


async def test_invoice_links_are_distinct_telegram_links(subject: Subject) -> None:
    links = [
        await subject.outbox.create_invoice_link(
            title="30 videos a month",
            description="30 credits every 30 days",
            payload=f"order:sub-{n}",
            currency="XTR",
            amount=900,
            label="30 videos a month",
            subscription_period=30 * 24 * 3600 if n else None,
        )
        for n in range(2)
    ]
    assert all(link.startswith("https://t.me/$") for link in links)
    assert links[0] != links[1]
