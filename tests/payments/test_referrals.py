"""Referrals: every user has an invite link (?start=ref_…); inviter and invitee get their
bonuses when the invitee makes a first purchase (not at sign-up), once per invitee. A link to
oneself, to nobody, or a second link are refused in plain words and change nothing."""

from __future__ import annotations

import asyncio
import re

from flick.i18n import t
from flick.models import money
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.harnesses import HarnessFactory
from flick.testing.shop import Shop

ANN, BEN, CAT, DAN = 1401, 1402, 1403, 1404
BOT = "flick_test_bot"


async def invite_code(h: EngineHarness, shop: Shop, uid: int) -> str:
    await h.command(uid, "invite")
    await h.settle()
    found = re.search(rf"https://t\.me/{BOT}\?start=ref_([A-Za-z0-9_-]+)", shop.texts(h, uid)[-1])
    assert found, shop.texts(h, uid)[-1]
    return found.group(1)


async def buy(h: EngineHarness, shop: Shop, uid: int, charge: str, index: int = 1) -> None:
    invoice = await shop.buy(h, uid, index)
    await shop.pay(h, uid, invoice.extra["payload"], charge, invoice.extra["amount"])
    await h.settle()


async def referral_rows(uid: int) -> list[tuple[int, int | None]]:
    rows = await pool().fetch(
        "SELECT delta, payment FROM ledger WHERE \"user\" = $1 AND reason = 'referral' ORDER BY id",
        uid,
    )
    return [(r["delta"], r["payment"]) for r in rows]


async def test_bonuses_come_with_the_first_purchase_once(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(bot_username=BOT, referral_inviter_credits=3, referral_invitee_credits=2)
    code = await invite_code(h, shop, ANN)
    assert shop.texts(h, ANN)[-1] == t(
        "en",
        "invite",
        link=f"https://t.me/{BOT}?start=ref_{code}",
        n=3,
        invitee=2,
        invited=0,
        counted=0,
        earned=0,
    )
    assert await invite_code(h, shop, ANN) == code  # the same link every time
    await h.command(BEN, "start", f"ref_{code}")
    await h.settle()
    assert shop.texts(h, BEN)[-1] == t("en", "referral_joined", n=2)
    # Signing up earns nobody anything.
    assert (await h.balance(ANN), await h.balance(BEN)) == (1, 1)

    await buy(h, shop, BEN, "ben-1")
    assert await h.balance(BEN) == 1 + 5 + 2 == await h.ledger_sum(BEN)
    assert await h.balance(ANN) == 1 + 3 == await h.ledger_sum(ANN)
    payment = await pool().fetchval(
        "SELECT id FROM payments WHERE telegram_payment_charge_id = 'ben-1'"
    )
    assert await referral_rows(BEN) == [(2, payment)]  # with the purchase, same transaction
    assert await referral_rows(ANN) == [(3, None)]
    assert shop.texts(h, BEN)[-1] == t("en", "referral_bonus_invitee", n=2, balance=8)
    assert shop.texts(h, ANN)[-1] == t("en", "referral_bonus_inviter", n=3, balance=4)

    # A second purchase, and the same referral link again: no more bonuses.
    await buy(h, shop, BEN, "ben-2")
    await h.command(BEN, "start", f"ref_{code}")
    await h.settle()
    assert shop.texts(h, BEN)[-1] == t("en", "referral_already")
    assert await h.balance(BEN) == 1 + 5 + 2 + 5 and await h.balance(ANN) == 4
    assert len(await referral_rows(ANN)) == 1 and len(await referral_rows(BEN)) == 1
    await invite_code(h, shop, ANN)
    assert (
        "Joined through your link so far: 1; bought credits: 1; credits you've earned: 3."
        in (shop.texts(h, ANN)[-1])
    )


async def test_bad_links_are_refused_in_plain_words_and_change_nothing(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(bot_username=BOT)
    ann = await invite_code(h, shop, ANN)
    cat = await invite_code(h, shop, CAT)
    await h.command(ANN, "start", f"ref_{ann}")  # one's own
    await h.command(BEN, "start", "ref_nobody42")  # nobody's
    await h.command(BEN, "start", "ref_")  # nothing at all
    await h.settle()
    assert shop.texts(h, ANN)[-1] == t("en", "referral_self")
    assert shop.texts(h, BEN).count(t("en", "referral_unknown")) == 2
    # The first valid link wins; a second one is refused, before or after it counted.
    await h.command(BEN, "start", f"ref_{ann}")
    await h.settle()
    await h.command(BEN, "start", f"ref_{cat}")
    await h.settle()
    assert shop.texts(h, BEN)[-1] == t("en", "referral_already")
    assert await pool().fetchval("SELECT count(*) FROM referrals") == 1
    assert await pool().fetchval("SELECT inviter FROM referrals") == ANN
    # Someone who bought before is not anyone's invitee.
    await buy(h, shop, DAN, "dan-1")
    await h.command(DAN, "start", f"ref_{ann}")
    await h.settle()
    assert shop.texts(h, DAN)[-1] == t("en", "referral_customer")
    assert await pool().fetchval("SELECT count(*) FROM referrals") == 1
    assert await h.balance(ANN) == 1


async def test_a_refunded_first_purchase_takes_the_invitees_bonus_back(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(bot_username=BOT, referral_inviter_credits=3, referral_invitee_credits=2)
    code = await invite_code(h, shop, ANN)
    await h.command(BEN, "start", f"ref_{code}")
    await buy(h, shop, BEN, "ben-r")
    await h.send(shop.refunded(h, BEN, "ben-r", 225))
    await h.settle()
    assert await h.balance(BEN) == 1 == await h.ledger_sum(BEN)  # 5 bought + 2 bonus taken
    assert shop.texts(h, BEN)[-1] == t("en", "payment_refunded", n=7, balance=1)
    assert await h.balance(ANN) == 4  # the inviter keeps theirs (an admin may /grant -3)
    # It counted: a later purchase brings no second bonus.
    await buy(h, shop, BEN, "ben-r2")
    assert await h.balance(BEN) == 1 + 5 and await h.balance(ANN) == 4


async def test_an_inviter_bonus_lost_with_a_restart_is_credited_at_start_once(
    harness: HarnessFactory, shop: Shop
) -> None:
    """The message to the inviter's actor lives in memory; the database remembers it is owed."""
    h = await harness(bot_username=BOT, referral_inviter_credits=3, referral_invitee_credits=0)
    code = await invite_code(h, shop, ANN)
    await h.command(BEN, "start", f"ref_{code}")
    await h.settle()
    # Ben's purchase is recorded, and then Flick stops before Ann's actor hears of it.
    credited = await money.credit_payment(
        BEN, charge_id="ben-x", provider_charge_id=None, payload="", currency="XTR", stars=225,
        credits=5, order_id=None, referral=(3, 0),
    )  # fmt: skip
    assert credited is not None and credited.referred is not None
    assert await h.balance(ANN) == 1
    for _ in range(2):  # a start, and another
        await h.app.resume_work()
        await h.settle()
    assert await h.balance(ANN) == 1 + 3 and await referral_rows(ANN) == [(3, None)]


async def test_two_invitees_buying_at_once_both_reward_the_inviter(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(bot_username=BOT, referral_inviter_credits=3, referral_invitee_credits=1)
    code = await invite_code(h, shop, ANN)
    for uid in (BEN, CAT, DAN):
        await h.command(uid, "start", f"ref_{code}")
    await h.settle()
    invoices = [await shop.buy(h, uid, 0) for uid in (BEN, CAT, DAN)]
    await asyncio.gather(
        *(
            h.send(shop.paid(h, uid, invoice.extra["payload"], f"c-{uid}", 50))
            for uid, invoice in zip((BEN, CAT, DAN), invoices, strict=True)
        )
    )
    await h.settle()
    assert await h.balance(ANN) == 1 + 9 == await h.ledger_sum(ANN)
    for uid in (BEN, CAT, DAN):
        assert await h.balance(uid) == 1 + 1 + 1


async def test_a_subscription_is_a_first_purchase_too(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness(bot_username=BOT, plans="monthly:30:900", referral_invitee_credits=2)
    code = await invite_code(h, shop, ANN)
    await h.command(BEN, "start", f"ref_{code}")
    await h.settle()
    await h.command(BEN, "subscription")
    await h.settle()
    await h.press(BEN, "sub:plan:monthly")
    await h.settle()
    link = [s for s in h.outbox.sent if s.method == "create_invoice_link"][-1]
    await h.send(shop.paid(h, BEN, link.extra["payload"], "ben-sub", 900))
    await h.settle()
    assert await h.balance(BEN) == 1 + 30 + 2 and await h.balance(ANN) == 1 + 2


async def test_without_the_bots_username_there_is_no_link_to_give(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness()
    await h.command(ANN, "invite")
    await h.settle()
    assert shop.texts(h, ANN) == [t("en", "invite_unavailable")]


async def test_with_both_bonuses_off_the_link_still_works_and_earns_nothing(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(bot_username=BOT, referral_inviter_credits=0, referral_invitee_credits=0)
    code = await invite_code(h, shop, ANN)
    assert "you get" not in shop.texts(h, ANN)[-1]
    await h.command(BEN, "start", f"ref_{code}")
    await buy(h, shop, BEN, "ben-0")
    assert await h.balance(ANN) == 1 and await h.balance(BEN) == 6
    assert await pool().fetchval("SELECT rewarded_at IS NOT NULL FROM referrals")
