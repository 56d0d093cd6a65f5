"""Star subscriptions through kurigram and the offline Telegram: the invoice link, the payments'
recurring flags, the user's own cancellations, and the bot's (requests checked as Telegram does)."""

from __future__ import annotations

import time

import pytest

from flick.errors import TelegramRefused
from flick.events import (
    Event,
    GroupMessage,
    PaymentSucceeded,
    PreCheckout,
    SubscriptionChanged,
    UserInfo,
)
from flick.ports import RecipientUnreachable
from flick.telegram.adapter import TelegramAdapter
from flick.telegram.outbox import TelegramOutbox
from flick.telegram.stars import star_transactions
from flick.testing.telegram import OfflineTelegram, errors, raw

Events = list[Event | GroupMessage]
PERIOD = 30 * 24 * 3600


async def link(outbox: TelegramOutbox, payload: str = "order:sub-1", **overrides: object) -> str:
    options: dict[str, object] = {
        "title": "30 videos a month",
        "description": "30 credits every 30 days",
        "payload": payload,
        "currency": "XTR",
        "amount": 900,
        "label": "30 videos a month",
        "subscription_period": PERIOD,
    }
    options.update(overrides)
    return await outbox.create_invoice_link(**options)  # type: ignore[arg-type]


async def test_the_link_and_the_payments_of_a_subscription(
    tg: OfflineTelegram, outbox: TelegramOutbox, adapter: TelegramAdapter, events: Events
) -> None:
    alice = tg.user(1001, "Alice")
    url = await link(outbox)
    (exported,) = tg.sent(raw.functions.payments.ExportInvoice)
    invoice = exported.request.invoice_media.invoice
    assert (invoice.currency, invoice.subscription_period) == ("XTR", PERIOD)
    assert [p.amount for p in invoice.prices] == [
        900
    ] and not exported.request.invoice_media.provider
    assert url.startswith("https://t.me/$")

    await tg.push(tg.pre_checkout_link(alice, url))
    await tg.push(tg.pay_link(alice, url, charge_id="sub-first"))
    await tg.push(tg.renewal(alice, "sub-first", charge_id="sub-second"))
    query, first, renewal = events
    assert isinstance(query, PreCheckout)
    assert query.payload == "order:sub-1" and query.total_amount == 900
    assert isinstance(first, PaymentSucceeded) and isinstance(renewal, PaymentSucceeded)
    assert (first.charge_id, first.recurring, first.first_recurring) == ("sub-first", True, True)
    assert (renewal.charge_id, renewal.recurring, renewal.first_recurring) == (
        "sub-second", True, False
    )  # fmt: skip
    assert first.payload == renewal.payload == "order:sub-1"  # Telegram repeats it
    assert first.subscription_until is not None and renewal.subscription_until is not None
    assert renewal.subscription_until - first.subscription_until == PERIOD
    assert abs(first.subscription_until - (time.time() + PERIOD)) < 60

    # The Stars history says which charges belong to a subscription (for reconciliation).
    history = await star_transactions(tg.client, inbound=False, outbound=False)
    assert {(tx.charge_id, tx.subscription_period) for tx in history} == {
        ("sub-first", PERIOD),
        ("sub-second", PERIOD),
    }


async def test_the_users_own_cancellation_reaches_the_bot(
    tg: OfflineTelegram, outbox: TelegramOutbox, adapter: TelegramAdapter, events: Events
) -> None:
    alice = tg.user(1001, "Alice", username="alice")
    url = await link(outbox)
    await tg.push(tg.pay_link(alice, url, charge_id="sub-a"))
    await tg.push(tg.change_subscription(alice, "sub-a", canceled=True))
    await tg.push(tg.change_subscription(alice, "sub-a", canceled=False))
    await tg.push(tg.subscription_payment_failed(alice, "sub-a"))
    changes = [e for e in events if isinstance(e, SubscriptionChanged)]
    assert [(c.state, c.payload) for c in changes] == [
        ("canceled", "order:sub-1"),
        ("restored", "order:sub-1"),
        ("payment_failed", "order:sub-1"),
    ]
    assert changes[0].user == UserInfo(1001, 1001, "alice", "Alice", "en")
    assert len({c.event_id for c in changes}) == 3
    # The same update redelivered is the same event (qts numbers it).
    again = tg.change_subscription(alice, "sub-a", canceled=True)
    await tg.push(again)
    await tg.push(again)
    assert events[-1].event_id == events[-2].event_id
    # Another user cannot touch it.
    bob = tg.user(1002, "Bob")
    with pytest.raises(errors.BadRequest, match="SUBSCRIPTION_ID_INVALID"):
        tg.change_subscription(bob, "sub-a", canceled=True)


async def test_the_bot_turns_renewal_off_and_on(
    tg: OfflineTelegram, outbox: TelegramOutbox, adapter: TelegramAdapter
) -> None:
    alice, bob = tg.user(1001, "Alice"), tg.user(1002, "Bob")
    url = await link(outbox)
    await tg.push(tg.pay_link(alice, url, charge_id="sub-b"))
    subscription = tg.server.subscriptions.by_charge["sub-b"]
    await outbox.edit_subscription(alice.id, "sub-b", canceled=True)
    assert (subscription.canceled, subscription.bot_canceled) == (True, True)
    (cancel,) = tg.sent(raw.functions.payments.BotCancelStarsSubscription)
    assert cancel.request.charge_id == "sub-b" and not cancel.request.restore
    # The user cannot turn a bot's cancellation back on; the bot can.
    with pytest.raises(errors.BadRequest, match="SUBSCRIPTION_NOT_MODIFIED"):
        tg.change_subscription(alice, "sub-b", canceled=False)
    await outbox.edit_subscription(alice.id, "sub-b", canceled=False)
    assert (subscription.canceled, subscription.bot_canceled) == (False, False)
    # A charge that is not this user's subscription, or a user Telegram does not know.
    with pytest.raises(TelegramRefused, match="CHARGE_ID_INVALID"):
        await outbox.edit_subscription(bob.id, "sub-b", canceled=True)
    with pytest.raises(TelegramRefused, match="CHARGE_ID_INVALID"):
        await outbox.edit_subscription(alice.id, "no-such-charge", canceled=True)
    with pytest.raises(RecipientUnreachable):
        await outbox.edit_subscription(5555, "sub-b", canceled=True)


async def test_telegram_refuses_subscriptions_it_does_not_sell(
    tg: OfflineTelegram, outbox: TelegramOutbox
) -> None:
    alice = tg.user(1001, "Alice")
    with pytest.raises(TelegramRefused, match="SUBSCRIPTION_PERIOD_INVALID"):
        await link(outbox, subscription_period=7 * 24 * 3600)
    with pytest.raises(TelegramRefused, match="SUBSCRIPTION_PERIOD_INVALID"):
        await link(outbox, currency="USD")
    with pytest.raises(TelegramRefused, match="INVOICE_PAYLOAD_INVALID"):
        await link(outbox, payload="x" * 129)
    # A subscription cannot be sent as an invoice message: only sold through a link.
    with pytest.raises(errors.BadRequest, match="SUBSCRIPTION_EXPORT_MISSING"):
        await tg.client.invoke(
            raw.functions.messages.SendMedia(
                peer=await tg.client.resolve_peer(alice.id),
                media=raw.types.InputMediaInvoice(
                    title="t",
                    description="d",
                    invoice=raw.types.Invoice(
                        currency="XTR",
                        prices=[raw.types.LabeledPrice(label="x", amount=900)],
                        subscription_period=PERIOD,
                    ),
                    payload=b"order:x",
                    provider="",
                    provider_data=raw.types.DataJSON(data="{}"),
                ),
                message="",
                random_id=1,
            )
        )
    # A plain one-off link is fine.
    assert (await link(outbox, subscription_period=None)).startswith("https://t.me/$")
