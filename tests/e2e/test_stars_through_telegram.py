"""Stars payments as Telegram delivers them: invoice, pre-checkout, payment, refund, reconcile."""

from __future__ import annotations

import asyncio

from flick.i18n import t
from flick.models.db import pool
from flick.payments.reconcile import StarTransaction, charges_from
from flick.telegram.stars import star_transactions
from flick.testing.bot import Bot
from flick.testing.telegram import raw


async def buy(bot: Bot, user: object, package: int = 1) -> str:
    """Press a package button; returns the invoice payload Telegram got."""
    await bot.push(bot.tg.command(user, "buy"))
    await bot.push(bot.tg.callback(user, f"buy:{package}"))
    invoice = bot.tg.sent(raw.functions.messages.SendMedia, user.id)[-1].request.media  # type: ignore[attr-defined]
    assert isinstance(invoice, raw.types.InputMediaInvoice)
    assert invoice.invoice.currency == "XTR" and not invoice.provider
    assert [p.amount for p in invoice.invoice.prices] == [225]  # from the server's price list
    return str(invoice.payload.decode())


def answers(bot: Bot) -> list[raw.functions.messages.SetBotPrecheckoutResults]:
    return [e.request for e in bot.tg.sent(raw.functions.messages.SetBotPrecheckoutResults)]


async def balance(uid: int) -> int:
    return int(await pool().fetchval("SELECT balance FROM users WHERE telegram_id = $1", uid))


async def test_pre_checkout_accepts_the_order_and_refuses_bad_ones(bot: Bot) -> None:
    alice, mallory = bot.tg.user(6001, "Alice"), bot.tg.user(6002, "Mallory")
    await bot.push(bot.tg.command(mallory, "start"))
    payload = await buy(bot, alice)
    cases = [
        (alice, payload, 225, "XTR", None),
        (alice, "order:00000000-0000-0000-0000-000000000000", 225, "XTR", "precheckout_unknown"),
        (mallory, payload, 225, "XTR", "precheckout_unknown"),  # someone else's order
        (alice, payload, 1, "XTR", "precheckout_mismatch"),  # a price of its own
        (alice, payload, 225, "USD", "precheckout_mismatch"),  # another currency
    ]
    for user, body, amount, currency, _ in cases:
        await bot.push(
            bot.tg.pre_checkout(user, payload=body, total_amount=amount, currency=currency)
        )
    got = answers(bot)
    assert len(got) == len(cases)  # every query answered, once
    for answer, (_, _, _, _, problem) in zip(got, cases, strict=True):
        if problem is None:
            assert answer.success and not answer.error
        else:
            assert not answer.success and answer.error == t("en", problem)


async def test_one_payment_delivered_fifty_times_at_once_is_credited_once(bot: Bot) -> None:
    alice = bot.tg.user(6003, "Alice")
    payload = await buy(bot, alice)
    copies = [
        bot.tg.payment(alice, payload=payload, total_amount=225, charge_id="stx-once")
        for _ in range(50)
    ]
    await asyncio.gather(*(bot.tg.push(c) for c in copies))
    await bot.h.settle()
    assert await balance(alice.id) == 1 + 5
    assert await pool().fetchval("SELECT count(*) FROM payments") == 1
    thanks = t("en", "payment_thanks", n=5, balance=6)
    assert bot.tg.texts_to(alice.id).count(thanks) == 1
    # Paying the same invoice again is another charge: credited too (they paid twice).
    await bot.push(bot.tg.payment(alice, payload=payload, total_amount=225, charge_id="stx-two"))
    assert await balance(alice.id) == 11


async def test_refund_takes_credits_back_and_reconcile_credits_what_never_arrived(
    bot: Bot,
) -> None:
    alice, bob = bot.tg.user(6004, "Alice"), bot.tg.user(6005, "Bob")
    payload = await buy(bot, alice)
    await bot.push(bot.tg.payment(alice, payload=payload, total_amount=225, charge_id="stx-r"))
    await bot.push(bot.tg.refund(alice, charge_id="stx-r", total_amount=225, payload=payload))
    await bot.push(bot.tg.refund(alice, charge_id="stx-r", total_amount=225, payload=payload))
    assert await balance(alice.id) == 1  # the free credit stays; the 5 bought are gone, once
    assert await pool().fetchval("SELECT status FROM payments") == "refunded"

    # Bob paid, but the update never reached the bot (built, never pushed): Telegram's Stars
    # history has it, and reconcile credits it — once, however often it runs.
    await bot.push(bot.tg.command(bob, "start"))
    bot.tg.payment(bob, payload="order:lost", total_amount=225, charge_id="stx-lost")
    for _ in range(2):
        history = await star_transactions(bot.tg.client, inbound=False, outbound=False)
        report = await bot.h.app.reconcile(history)
        await bot.h.settle()
    assert [c.charge_id for c in report.missing] == []  # the second run found it done
    assert report.already >= 1
    assert (
        await pool().fetchval(
            "SELECT source FROM payments WHERE telegram_payment_charge_id = 'stx-lost'"
        )
        == "reconcile"
    )
    assert (
        await pool().fetchval("SELECT balance FROM users WHERE telegram_id = $1", bob.id) == 1 + 5
    )


def test_a_charge_refunded_at_telegram_is_not_reconciled() -> None:
    paid = StarTransaction("stx-a", 1, 225, "order:x", False, 1)
    refunded = StarTransaction("stx-a", 1, -225, "order:x", True, 2)
    other = StarTransaction("stx-b", 2, 50, "", False, 3)
    charges = charges_from([refunded, paid, other])
    assert [(c.charge_id, c.refund) for c in charges] == [("stx-a", True), ("stx-b", False)]
