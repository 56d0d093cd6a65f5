"""Promo codes: an operator makes them (credits, uses, expiry) and switches them off; a user
redeems one with /promo CODE or the deep link ?start=promo_CODE. A code counts at most once per
user and never beyond its uses, also when many redeem its last use at once; every refusal is said
in plain words, and nothing is credited twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from flick import events as ev
from flick.i18n import t
from flick.models import money, promos
from flick.models.db import pool
from flick.payments.promos import normalize_code
from flick.testing.engine import EngineHarness
from flick.testing.harnesses import HarnessFactory
from flick.testing.shop import Shop

ADMIN, ALICE, BOB = 1300, 1301, 1302


async def make(
    h: EngineHarness, code: str, credits: int = 3, uses: int = 10, days: str = ""
) -> None:
    await h.command(ADMIN, "promos", f"new {code} {credits} {uses} {days}".strip())
    await h.settle()


async def promo_rows(uid: int) -> list[tuple[int, str]]:
    rows = await pool().fetch(
        "SELECT delta, note FROM ledger WHERE \"user\" = $1 AND reason = 'promo' ORDER BY id", uid
    )
    return [(r["delta"], r["note"]) for r in rows]


async def test_a_code_counts_once_per_user_whatever_its_spelling(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(admin_ids=[ADMIN], bot_username="flick_test_bot")
    await make(h, "Summer-24", credits=3)
    created = shop.texts(h, ADMIN)[-1]
    assert "SUMMER-24" in created and "https://t.me/flick_test_bot?start=promo_SUMMER-24" in created
    # Odd case, spaces, a non-breaking hyphen, full-width letters, a Cyrillic "S": one code.
    spellings = [" summer-24 ", "SUMMER‑24", "ＳＵＭＭＥＲ-２４", "Ѕummer - 24", "summer-24\u200b"]
    for spelling in spellings:
        await h.command(ALICE, "promo", spelling)
        await h.settle()
    assert await promo_rows(ALICE) == [(3, "code SUMMER-24")]
    assert await h.balance(ALICE) == 1 + 3 == await h.ledger_sum(ALICE)
    said = shop.texts(h, ALICE)
    assert said[0] == t("en", "promo_ok", code="SUMMER-24", n=3, balance=4)
    assert said[1:] == [t("en", "promo_already", code="SUMMER-24")] * 4
    assert (await promos.get("SUMMER-24")).used == 1  # type: ignore[union-attr]


async def test_the_deep_link_redeems_too(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness(admin_ids=[ADMIN])
    await make(h, "WELCOME5", credits=5)
    await h.command(ALICE, "start", "promo_WELCOME5")
    await h.settle()
    assert await h.balance(ALICE) == 1 + 5
    assert shop.texts(h, ALICE)[-1] == t("en", "promo_ok", code="WELCOME5", n=5, balance=6)
    assert shop.texts(h, ALICE)[0].startswith("Hi User1301!")  # the welcome still comes first


@pytest.mark.parametrize(
    ("typed", "key", "shown"),
    [
        ("NOSUCHCODE", "promo_unknown", "NOSUCHCODE"),
        ("промо", "promo_unknown", "промо"),  # Cyrillic letters with no Latin twin
        ("🎁🎁🎁", "promo_unknown", "🎁🎁🎁"),
        ("x" * 80, "promo_unknown", "x" * 31 + "…"),
    ],
)
async def test_unknown_codes_are_refused_in_plain_words(
    harness: HarnessFactory, shop: Shop, typed: str, key: str, shown: str
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.command(ALICE, "promo", typed)
    await h.settle()
    assert shop.texts(h, ALICE)[-1] == t("en", key, code=shown)
    assert await h.balance(ALICE) == 1 and await promo_rows(ALICE) == []


async def test_expired_disabled_and_used_up_codes_are_refused(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await promos.create("OLD", 2, 10, datetime.now(UTC) - timedelta(minutes=1), ADMIN)
    await make(h, "GONE", credits=2)
    await h.command(ADMIN, "promos", "off gone")
    await make(h, "ONCE", credits=2, uses=1)
    await h.command(BOB, "promo", "ONCE")
    await h.settle()
    for code in ("OLD", "GONE", "ONCE"):
        await h.command(ALICE, "promo", code)
        await h.settle()
    assert shop.texts(h, ALICE) == [
        t("en", "promo_expired", code="OLD"),
        t("en", "promo_disabled", code="GONE"),
        t("en", "promo_used_up", code="ONCE"),
    ]
    assert await h.balance(ALICE) == 1 and await promo_rows(ALICE) == []
    assert await h.balance(BOB) == 1 + 2


async def test_a_code_used_by_someone_is_refused_to_them_after_it_was_switched_off(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await make(h, "LATE", credits=2)
    await h.command(ALICE, "promo", "LATE")
    await h.settle()
    await h.command(ADMIN, "promos", "off LATE")
    await h.settle()
    await h.command(ALICE, "promo", "LATE")
    await h.settle()
    assert shop.texts(h, ALICE)[-1] == t("en", "promo_already", code="LATE")  # the truer reason


@pytest.mark.parametrize("uses", [1, 3])
async def test_many_users_redeeming_the_last_uses_at_once_never_go_beyond_them(
    harness: HarnessFactory, shop: Shop, uses: int
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await make(h, "RUSH", credits=4, uses=uses)
    users = range(2000, 2030)
    await asyncio.gather(*(h.command(uid, "promo", "rush") for uid in users))
    await h.settle()
    winners = [uid for uid in users if await h.balance(uid) == 1 + 4]
    assert len(winners) == uses
    assert (await promos.get("RUSH")).used == uses  # type: ignore[union-attr]
    assert await pool().fetchval("SELECT count(*) FROM ledger WHERE reason = 'promo'") == uses
    losers = [uid for uid in users if uid not in winners]
    for uid in losers:
        assert shop.texts(h, uid)[-1] == t("en", "promo_used_up", code="RUSH")
        assert await h.balance(uid) == 1


async def test_one_user_sending_a_code_many_times_at_once_gets_it_once(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await make(h, "TWICE", credits=2, uses=100)
    await asyncio.gather(*(h.command(ALICE, "promo", "TWICE") for _ in range(10)))
    await h.settle()
    assert await promo_rows(ALICE) == [(2, "code TWICE")]
    assert await h.balance(ALICE) == 3


async def test_a_redelivered_promo_update_has_no_second_effect(
    harness: HarnessFactory, shop: Shop
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await make(h, "AGAIN", credits=2)
    event = ev.Command(h.user(ALICE), h.next_id(), "promo", "AGAIN")
    for _ in range(3):
        await h.send(event)
        await h.settle()
    assert await promo_rows(ALICE) == [(2, "code AGAIN")]
    assert shop.texts(h, ALICE) == [t("en", "promo_ok", code="AGAIN", n=2, balance=3)]


async def test_a_retried_redemption_is_told_the_same_success(harness: HarnessFactory) -> None:
    """A handler retried after a failure of ours (the same update) must not hear "already"."""
    h = await harness(admin_ids=[ADMIN])
    await h.command(ALICE, "start")
    await make(h, "RETRY", credits=2)
    first = await money.redeem_promo(ALICE, "RETRY", "m-1")
    again = await money.redeem_promo(ALICE, "RETRY", "m-1")
    other = await money.redeem_promo(ALICE, "RETRY", "m-2")
    assert (first.status, first.credits, first.balance) == ("ok", 2, 3)
    assert (again.status, again.credits, again.balance) == ("ok", 2, 3)
    assert other.status == "already"
    assert await promo_rows(ALICE) == [(2, "code RETRY")]


async def test_the_database_itself_refuses_a_use_past_the_limit(harness: HarnessFactory) -> None:
    h = await harness(admin_ids=[ADMIN])
    await make(h, "LIMIT", uses=1)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool().execute("UPDATE promo_codes SET used = 2 WHERE code = 'LIMIT'")
    await h.command(ALICE, "promo", "LIMIT")
    await h.settle()
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool().execute(
            'INSERT INTO promo_redemptions (code, "user", credits, request_key) '
            "SELECT code, \"user\", credits, 'x' FROM promo_redemptions"
        )


async def test_promo_without_a_code_explains_itself(harness: HarnessFactory, shop: Shop) -> None:
    h = await harness()
    await h.command(ALICE, "promo")
    await h.settle()
    assert shop.texts(h, ALICE) == [t("en", "promo_usage")]


def test_normal_form() -> None:
    assert normalize_code(" summer-24 ") == "SUMMER-24"
    assert normalize_code("ＳＵＭＭＥＲ２４") == "SUMMER24"
    assert normalize_code("РROMO") == "PROMO"  # a Cyrillic Р
    assert normalize_code("ΑΒΓ") is None  # Greek Gamma has no Latin twin
    assert normalize_code("ab") is None and normalize_code("a" * 33) is None
    assert normalize_code("se cret\t1") == "SECRET1"
