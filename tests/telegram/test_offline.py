"""The offline Telegram itself: it must be as strict as Telegram where our code depends on it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flick.events import Event, GroupMessage
from flick.telegram.adapter import TelegramAdapter
from flick.telegram.stars import star_transactions
from flick.testing.telegram import OfflineTelegram, errors, raw


async def test_stars_history_lists_payments_and_refunds(tg: OfflineTelegram) -> None:
    alice, bob = tg.user(1001), tg.user(1002, "Bob")
    await tg.push(tg.payment(alice, payload="order:1", total_amount=50, charge_id="stx1"))
    await tg.push(tg.payment(bob, payload="order:2", total_amount=225, charge_id="stx2"))
    assert await tg.client.refund_star_payment(alice.id, "stx1")

    def query(**flags: Any) -> Any:
        return raw.functions.payments.GetStarsTransactions(
            peer=raw.types.InputPeerSelf(), offset=flags.pop("offset", ""), limit=1, **flags
        )

    first = await tg.client.invoke(query(inbound=True))
    second = await tg.client.invoke(query(inbound=True, offset=first.next_offset))
    inbound = [*first.history, *second.history]
    assert sorted((t.id, t.amount.amount, t.bot_payload) for t in inbound) == [
        ("stx1", 50, b"order:1"),
        ("stx2", 225, b"order:2"),
    ]
    assert second.next_offset is None
    refunds = (await tg.client.invoke(query(outbound=True))).history
    assert [(t.id, t.amount.amount, t.refund) for t in refunds] == [("stx1", -50, True)]


async def test_downloads_follow_telegrams_alignment_rules(tg: OfflineTelegram) -> None:
    alice = tg.user(1001)
    incoming = tg.photo(alice, b"\xff\xd8" + bytes(5000), size=(100, 100))
    photo = incoming.message.media.photo
    location = raw.types.InputPhotoFileLocation(
        id=photo.id,
        access_hash=photo.access_hash,
        file_reference=photo.file_reference,
        thumb_size=photo.sizes[-1].type,
    )
    session = tg.client.media_sessions[tg.server.dc_id]
    ok = await session.invoke(raw.functions.upload.GetFile(location=location, offset=0, limit=4096))
    assert len(ok.bytes) == 4096
    with pytest.raises(errors.LimitInvalid):
        await session.invoke(raw.functions.upload.GetFile(location=location, offset=0, limit=1000))
    with pytest.raises(errors.OffsetInvalid):
        await session.invoke(
            raw.functions.upload.GetFile(location=location, offset=100, limit=4096)
        )
    location.file_reference = b"stale"
    with pytest.raises(errors.FileReferenceExpired):
        await session.invoke(raw.functions.upload.GetFile(location=location, offset=0, limit=4096))


async def test_requests_it_cannot_answer_fail_loudly(tg: OfflineTelegram) -> None:
    with pytest.raises(NotImplementedError, match="GetDialogs"):
        await tg.client.invoke(
            raw.functions.messages.GetDialogs(
                offset_date=0, offset_id=0, offset_peer=raw.types.InputPeerEmpty(), limit=1, hash=0
            )
        )


async def test_telegrams_limits_are_enforced(tg: OfflineTelegram) -> None:
    alice = tg.user(1001)
    with pytest.raises(errors.MessageTooLong):
        await tg.client.send_message(alice.id, "x" * 4097)
    with pytest.raises(errors.MessageEmpty):
        await tg.client.send_message(alice.id, "   ")
    with pytest.raises(errors.StarsInvoiceInvalid):
        await tg.client.send_invoice(
            alice.id,
            title="t",
            description="d",
            payload="p",
            currency="XTR",
            prices=[],
            provider_token="",
        )


async def test_a_stuck_handler_is_reported_not_waited_for_forever(tg: OfflineTelegram) -> None:
    tg.push_timeout = 0.2
    release = asyncio.Event()

    async def stuck(event: Event | GroupMessage) -> None:
        await release.wait()

    TelegramAdapter(tg.client, stuck).install()
    with pytest.raises(AssertionError, match="still busy"):
        await tg.push(tg.text(tg.user(1001), "hello"))
    release.set()


async def test_star_transactions_reads_every_page(tg: OfflineTelegram) -> None:
    alice = tg.user(1001)
    for n in range(5):
        await tg.push(tg.payment(alice, payload=f"order:{n}", total_amount=50, charge_id=f"s{n}"))
    await tg.client.refund_star_payment(alice.id, "s2")
    bought = await star_transactions(tg.client, page=2)
    assert [t.charge_id for t in bought] == ["s4", "s3", "s2", "s1", "s0"]
    assert {(t.user_id, t.stars, t.refund) for t in bought} == {(1001, 50, False)}
    assert bought[0].payload == "order:4"
    refunds = await star_transactions(tg.client, inbound=False, outbound=True)
    assert [(t.charge_id, t.stars, t.refund) for t in refunds] == [("s2", -50, True)]


async def test_a_fail_next_never_triggered_fails_the_test(tg: OfflineTelegram) -> None:
    alice = tg.user(1001, "Alice")
    tg.fail_next(raw.functions.messages.SendMessage, errors.UserIsBlocked, chat_id=alice.id)
    with pytest.raises(AssertionError, match="never triggered"):
        tg.assert_faults_used()  # what the `tg` fixture does when the test ends

    with pytest.raises(errors.UserIsBlocked):
        await tg.client.send_message(alice.id, "hello")

    tg.assert_faults_used()
