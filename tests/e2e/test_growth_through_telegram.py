"""Subscriptions, promo codes, referrals and bonus packs as Telegram delivers them: raw MTProto
updates in (payments with their recurring flags, the user's own subscription changes), the bot's
requests out (invoice links, botCancelStarsSubscription, refunds), the whole engine between, and
a ledger that explains every balance."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flick.i18n import t
from flick.models.db import pool
from flick.pipeline.local import LocalVideoProvider
from flick.storage import S3Storage
from flick.telegram.gateway import TelegramGateway
from flick.telegram.stars import star_transactions
from flick.testing.engine import EngineHarness
from flick.testing.telegram import OfflineTelegram, raw

ADMIN = 7700
PERIOD = 30 * 24 * 3600


@dataclass
class Bot:
    tg: OfflineTelegram
    h: EngineHarness

    async def push(self, *incoming: Any) -> None:
        await self.tg.push(*incoming)
        await self.h.settle()

    def last_text(self, user: Any) -> str:
        return self.tg.texts_to(user.id)[-1]

    def buttons(self, user: Any) -> list[tuple[str, str]]:
        with_keyboard = [
            e
            for e in self.tg.sent(raw.functions.messages.SendMessage, user.id)
            if e.request.reply_markup is not None
        ]
        return [b for row in self.tg.buttons(with_keyboard[-1]) for b in row]


@pytest.fixture
async def bot(database_url: str, storage: S3Storage, tmp_path: Path) -> AsyncIterator[Bot]:
    async with OfflineTelegram() as tg:
        engine: list[EngineHarness] = []

        async def dispatch(event: Any) -> None:
            await engine[0].app.dispatch(event)

        gateway = TelegramGateway(
            tg.client, dispatch, storage, tmp_dir=tmp_path / "spool", publish_commands=False
        )
        harness = EngineHarness(
            database_url,
            storage,
            tmp_path,
            video=LocalVideoProvider(tmp_path / "videos", duration=0.25, fps=4, width=64),
            outbox=gateway.outbox,  # type: ignore[arg-type]
            admin_ids=[ADMIN],
            plans="monthly:30:900",
            packages="1:50,10+2:400",
            referral_inviter_credits=2,
            referral_invitee_credits=1,
        )
        async with harness:
            engine.append(harness)
            async with gateway:
                # What `flick run` does once connected: invite links name the bot Telegram knows.
                assert tg.client.me is not None
                harness.app.supervisor.ctx.bot_username = tg.client.me.username
                yield Bot(tg, harness)


async def balance(uid: int) -> int:
    return int(await pool().fetchval("SELECT balance FROM users WHERE telegram_id = $1", uid))


async def explained(uid: int) -> bool:
    """The balance is the sum of the user's ledger rows."""
    ledger = await pool().fetchval(
        'SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE "user" = $1', uid
    )
    return int(ledger) == await balance(uid)


async def test_a_subscription_from_its_link_to_its_refund(bot: Bot) -> None:
    tg = bot.tg
    alice = tg.user(7701, "Alice")
    admin = tg.user(ADMIN, "Admin")
    await bot.push(tg.command(alice, "subscription"))
    assert bot.buttons(alice) == [(t("en", "plan_button", n=30, stars=900), "sub:plan:monthly")]
    await bot.push(tg.callback(alice, "sub:plan:monthly"))
    (exported,) = tg.sent(raw.functions.payments.ExportInvoice)
    assert exported.request.invoice_media.invoice.subscription_period == PERIOD
    [(label, url)] = bot.buttons(alice)
    assert url == exported.result.url and label == t("en", "plan_button", n=30, stars=900)

    await bot.push(tg.pre_checkout_link(alice, url))
    (answer,) = tg.sent(raw.functions.messages.SetBotPrecheckoutResults)
    assert answer.request.success
    await bot.push(tg.pay_link(alice, url, charge_id="sub-alice"))
    assert await balance(alice.id) == 1 + 30
    assert bot.last_text(alice).startswith("You're subscribed! 30 credits added. Balance: 31.")

    # A renewal, delivered twice in one batch and once more later: credited once.
    renewal = tg.renewal(alice, "sub-alice", charge_id="renew-alice")
    await bot.push(renewal, renewal)
    await bot.push(renewal)
    assert await balance(alice.id) == 1 + 60

    # Alice turns renewal off in Telegram; the bot cannot turn it back on for her.
    await bot.push(tg.change_subscription(alice, "sub-alice", canceled=True))
    assert bot.last_text(alice).startswith("You've cancelled your subscription's renewal.")
    await bot.push(tg.command(alice, "subscription"))
    [(_, resume)] = bot.buttons(alice)
    await bot.push(tg.callback(alice, resume))
    assert bot.last_text(alice) == t("en", "subscription_resume_in_telegram")
    assert tg.sent(raw.functions.payments.BotCancelStarsSubscription) == []
    # She turns it back on; then cancels from /subscription, which the bot does at Telegram.
    await bot.push(tg.change_subscription(alice, "sub-alice", canceled=False))
    await bot.push(tg.command(alice, "subscription"))
    [(_, cancel)] = bot.buttons(alice)
    assert cancel.startswith("sub:cancel:")
    await bot.push(tg.callback(alice, cancel))
    (bot_cancel,) = tg.sent(raw.functions.payments.BotCancelStarsSubscription)
    assert bot_cancel.request.charge_id == "sub-alice" and not bot_cancel.request.restore
    assert tg.server.subscriptions.by_charge["sub-alice"].bot_canceled

    # Telegram renews once more anyway (the cancellation was late): credited, and told again.
    await bot.push(tg.renewal(alice, "sub-alice", charge_id="renew-late"))
    assert await balance(alice.id) == 1 + 90
    assert len(tg.sent(raw.functions.payments.BotCancelStarsSubscription)) == 2

    # The operator refunds that renewal: its credits go back, never below zero.
    await bot.push(tg.command(admin, "refund", "renew-late"))
    (refund,) = tg.sent(raw.functions.payments.RefundStarsCharge)
    assert refund.request.charge_id == "renew-late"
    assert await balance(alice.id) == 1 + 60
    assert bot.last_text(alice) == t("en", "subscription_refunded", n=30, spent=0, balance=61)
    rows = await pool().fetch('SELECT reason FROM ledger WHERE "user" = $1 ORDER BY id', alice.id)
    assert [r["reason"] for r in rows] == [
        "free", "subscription", "subscription", "subscription", "payment_refunded"
    ]  # fmt: skip
    assert await explained(alice.id)


async def test_a_subscription_charge_only_the_stars_history_has_is_reconciled(bot: Bot) -> None:
    tg = bot.tg
    bob = tg.user(7702, "Bob")
    await bot.push(tg.command(bob, "subscription"))
    await bot.push(tg.callback(bob, "sub:plan:monthly"))
    [(_, url)] = bot.buttons(bob)
    lost = tg.pay_link(bob, url, charge_id="sub-lost")  # paid; the update never reached the bot
    history = await star_transactions(tg.client, inbound=False, outbound=False)
    report = await bot.h.app.reconcile(history)
    await bot.h.settle()
    assert [c.charge_id for c in report.missing] == ["sub-lost"]
    assert await balance(bob.id) == 1 + 30
    row = await pool().fetchrow("SELECT plan, charge_id, renews FROM subscriptions")
    assert dict(row) == {"plan": "monthly", "charge_id": "sub-lost", "renews": True}
    # The update arrives after all: nothing more.
    await bot.push(lost)
    assert await balance(bob.id) == 1 + 30 and await explained(bob.id)


async def test_promo_codes_and_referrals_by_deep_link_and_a_bonus_pack(bot: Bot) -> None:
    tg = bot.tg
    admin, ann, ben = tg.user(ADMIN, "Admin"), tg.user(7703, "Ann"), tg.user(7704, "Ben")
    await bot.push(tg.command(admin, "promos", "new launch 3 100 30"))
    assert "https://t.me/flick_test_bot?start=promo_LAUNCH" in bot.last_text(admin)
    await bot.push(tg.command(ann, "start", "promo_LAUNCH"))
    await bot.push(tg.command(ann, "promo", "launch"))
    assert tg.texts_to(ann.id)[-2:] == [
        t("en", "promo_ok", code="LAUNCH", n=3, balance=4),
        t("en", "promo_already", code="LAUNCH"),
    ]

    await bot.push(tg.command(ann, "invite"))
    code = re.search(r"start=ref_([\w-]+)", bot.last_text(ann))
    assert code is not None
    await bot.push(tg.command(ben, "start", f"ref_{code.group(1)}"))
    assert bot.last_text(ben) == t("en", "referral_joined", n=1)
    await bot.push(tg.command(ben, "buy"))
    assert (t("en", "package_button_bonus", credits=10, bonus=2, stars=400), "buy:1") in (
        bot.buttons(ben)
    )
    await bot.push(tg.callback(ben, "buy:1"))
    invoice = tg.sent(raw.functions.messages.SendMedia, ben.id)[-1].request.media
    assert invoice.title == t("en", "package_title_bonus", credits=10, n=2)
    assert [p.amount for p in invoice.invoice.prices] == [400]
    payload = invoice.payload.decode()
    await bot.push(tg.pre_checkout(ben, payload=payload, total_amount=400))
    await bot.push(tg.payment(ben, payload=payload, total_amount=400, charge_id="ben-pack"))
    assert await balance(ben.id) == 1 + 10 + 2 + 1  # the pack, its bonus, the invitee's bonus
    assert await balance(ann.id) == 1 + 3 + 2  # the promo code, the inviter's bonus
    for uid in (ann.id, ben.id):
        assert await explained(uid)

    # The operator's view.
    await bot.push(tg.command(admin, "stats"))
    stats = bot.last_text(admin)
    assert "packages: payments 1, 400 ⭐" in stats
    assert "promo codes 3, referrals 3, package bonuses 2" in stats
    await bot.push(tg.command(admin, "user", str(ben.id)))
    card = bot.last_text(admin)
    assert f"invited by: {ann.id}" in card and "subscription: —" in card
    await bot.push(tg.command(admin, "user", str(ann.id)))
    assert "promo codes: LAUNCH (+3" in bot.last_text(admin)
    assert "invited: 1 (bought: 1, credits earned: 2)" in bot.last_text(admin)
