"""The operator's growth tools: /promos (list, new, off) and what /stats and /user say about
subscriptions, promo codes, referrals and bonus packs. Admin commands only for ADMIN_IDS."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from flick import events as ev
from flick.i18n import t
from flick.models import promos
from flick.testing.engine import EngineHarness
from flick.testing.harnesses import HarnessFactory

ADMIN, USER, FRIEND = 950, 951, 952
PERIOD = 30 * 24 * 3600


def replies(h: EngineHarness, uid: int) -> list[str]:
    return [s.text for s in h.outbox.to(uid) if s.method == "send_text"]


async def test_promos_is_for_admins_only(harness: HarnessFactory) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.command(USER, "promos", "new FREE 100 100")
    await h.settle()
    assert replies(h, USER) == [t("en", "unknown_command")]
    assert await promos.recent() == []


async def test_making_listing_and_switching_off_codes(harness: HarnessFactory) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.command(ADMIN, "promos")
    await h.settle()
    assert replies(h, ADMIN)[-1] == t("en", "admin_promos_none")
    before = datetime.now(UTC)
    for args in ("new spring 5 2 7", "new FOREVER 1 1000", "new spring 9 9"):
        await h.command(ADMIN, "promos", args)
        await h.settle()
    made = await promos.get("SPRING")
    assert made is not None and (made.credits, made.max_uses) == (5, 2)
    assert made.expires_at is not None
    assert before + timedelta(days=7) <= made.expires_at <= datetime.now(UTC) + timedelta(days=7)
    assert (await promos.get("FOREVER")).expires_at is None  # type: ignore[union-attr]
    assert replies(h, ADMIN)[-1] == t("en", "admin_promo_exists", code="SPRING")
    await h.command(USER, "promo", "spring")
    await h.command(ADMIN, "promos", "off forever")
    await h.command(ADMIN, "promos", "off forever")
    await h.command(ADMIN, "promos", "off nothing")
    await h.settle()
    assert replies(h, ADMIN)[-3:] == [
        t("en", "admin_promo_disabled", code="FOREVER"),
        t("en", "admin_promo_already", code="FOREVER"),
        t("en", "admin_promo_unknown", code="NOTHING"),
    ]
    await h.command(ADMIN, "promos")
    await h.settle()
    listing = replies(h, ADMIN)[-1].splitlines()
    assert listing[0].startswith("FOREVER: 1 credit, 0/1000 used, switched off, until —")
    assert listing[1].startswith("SPRING: 5 credits, 1/2 used, active, until 20")


@pytest.mark.parametrize(
    "args",
    [
        "new",
        "new CODE",
        "new CODE 5",
        "new CODE five 10",
        "new CODE 0 10",
        "new CODE 5 0",
        "new CODE 5 10 0",
        "new CODE 5 10 99999",
        "new CODE 5 10 7 extra",
        "new ab 5 10",
        "new 🎁🎁🎁 5 10",
        "new CODE 100000 10",
        "frobnicate",
    ],
)
async def test_a_bad_promos_command_explains_itself_and_makes_nothing(
    harness: HarnessFactory, args: str
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.command(ADMIN, "promos", args)
    await h.settle()
    assert replies(h, ADMIN) == [t("en", "admin_promos_usage")]
    assert await promos.recent() == []


async def test_stats_split_revenue_by_source_and_count_what_was_given(
    harness: HarnessFactory,
) -> None:
    h = await harness(
        admin_ids=[ADMIN],
        plans="monthly:30:900",
        packages="1:50,10+2:400",
        star_usd=0.01,
        bot_username="flick_test_bot",
    )
    # A bonus pack bought, a subscription and a renewal, a promo code, a referral.
    await h.command(ADMIN, "promos", "new GIFT 4 10")
    await h.command(USER, "start")
    await h.settle()
    await h.command(USER, "invite")
    await h.settle()
    code = replies(h, USER)[-1].split("ref_")[1].split()[0]
    await h.command(FRIEND, "start", f"ref_{code}")
    await h.command(FRIEND, "promo", "gift")
    await h.settle()
    await h.press(FRIEND, "buy:1")
    await h.settle()
    payload = [s for s in h.outbox.to(FRIEND) if s.method == "send_invoice"][-1].extra["payload"]
    await h.send(ev.PaymentSucceeded(h.user(FRIEND), "pay:p", "pack", "", "XTR", 400, payload))
    await h.settle()
    await h.command(USER, "subscription")
    await h.settle()
    await h.press(USER, "sub:plan:monthly")
    await h.settle()
    link = [s for s in h.outbox.sent if s.method == "create_invoice_link"][-1].extra["payload"]
    until = int(time.time()) + PERIOD
    for charge, first, end in (("s1", True, until), ("s2", False, until + PERIOD)):
        await h.send(
            ev.PaymentSucceeded(
                h.user(USER),
                f"pay:{charge}",
                charge,
                "",
                "XTR",
                900,
                link,
                recurring=True,
                first_recurring=first,
                subscription_until=end,
            )
        )
        await h.settle()
    await h.command(ADMIN, "stats", "7")
    await h.settle()
    stats = replies(h, ADMIN)[-1]
    assert "payments: 3, 2200 ⭐ ≈ $22.00" in stats  # the totals, as before
    assert "packages: payments 1, 400 ⭐ ≈ $4.00" in stats
    assert "subscriptions: payments 2 (new 1, renewals 1), 1800 ⭐ ≈ $18.00" in stats
    assert "subscriptions now: active 1, renewing 1" in stats
    assert "credits given: promo codes 4, referrals 3, package bonuses 2" in stats
    assert "margin: $22.00" in stats  # no provider cost yet

    await h.command(ADMIN, "user", str(USER))
    await h.settle()
    card = replies(h, ADMIN)[-1]
    assert "subscription: monthly (30 credits for 900⭐, renewals: 1), renews" in card
    assert "invited: 1 (bought: 1, credits earned: 2)" in card
    assert "balance: 63" in card  # free 1, the plan twice, the inviter's bonus
