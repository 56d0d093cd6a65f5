"""Admin commands: each works for ADMIN_IDS and is refused (as an unknown command) for others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from loguru import logger

from flick import events as ev
from flick.i18n import t
from flick.models.db import pool
from flick.styles import DEFAULT_FILE
from flick.testing.engine import EngineHarness

ADMIN, USER = 900, 901
Start = Callable[..., Awaitable[EngineHarness]]


async def replies(h: EngineHarness, uid: int) -> list[str]:
    return [s.text for s in h.outbox.to(uid) if s.method == "send_text"]


@pytest.mark.parametrize(
    "command", ["stats", "user 901", "grant 901 5 gift", "refund x", "broadcast hello"]
)
async def test_non_admin_gets_unknown_command_and_nothing_changes(
    harness: Start, command: str
) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.command(USER, "start")
    await h.settle()
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING")
    try:
        name, _, args = command.partition(" ")
        await h.command(USER, name, args)
        await h.settle()
    finally:
        logger.remove(sink)
    assert (await replies(h, USER))[-1] == t("en", "unknown_command")
    assert await h.balance(USER) == 1
    assert await pool().fetchval("SELECT count(*) FROM broadcasts") == 0
    assert any("non-admin" in line for line in lines)  # the attempt is logged


async def test_grant_goes_through_the_users_actor_and_the_ledger(harness: Start) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.command(USER, "start")
    await h.command(ADMIN, "start")
    await h.settle()
    await h.command(ADMIN, "grant", "@user901 5 contest winner")
    await h.settle()
    assert await h.balance(USER) == 6
    note = await pool().fetchval(
        "SELECT note FROM ledger WHERE \"user\" = $1 AND reason = 'grant'", USER
    )
    assert "contest winner" in note and str(ADMIN) in note
    # The user's actor knows at once: /balance answers from memory.
    await h.command(USER, "balance")
    await h.settle()
    assert (await replies(h, USER))[-1] == t("en", "balance", n=6)
    assert t("en", "granted", n=5, balance=6) in await replies(h, USER)
    await h.command(ADMIN, "grant", "901 lots reason")
    await h.settle()
    assert (await replies(h, ADMIN))[-1] == t("en", "admin_grant_usage")


async def test_stats_and_user_card(harness: Start) -> None:
    h = await harness(admin_ids=[ADMIN], star_usd=0.01)
    await h.command(USER, "start")
    await h.settle()
    await h.send(ev.PaymentSucceeded(h.user(USER), "pay:c1", "c1", "p1", "XTR", 225, "nope"))
    await h.settle()
    await h.command(ADMIN, "stats", "7")
    await h.command(ADMIN, "user", "901")
    await h.command(ADMIN, "user", "@nobody")
    await h.settle()
    stats, card, missing = (await replies(h, ADMIN))[-3:]
    assert "225 ⭐" in stats and "$2.25" in stats and "users: 2" in stats
    assert "balance: 6" in card and "c1" in card
    assert missing == t("en", "admin_no_user", ref="@nobody")


async def test_refund_takes_credits_back_and_already_refunded_is_done(harness: Start) -> None:
    h = await harness(admin_ids=[ADMIN])
    await h.command(USER, "start")
    await h.settle()
    await h.send(ev.PaymentSucceeded(h.user(USER), "pay:c9", "c9", "p9", "XTR", 225, "x"))
    await h.settle()
    assert await h.balance(USER) == 6
    await h.command(ADMIN, "refund", "c9")
    await h.settle()
    assert await h.balance(USER) == 1
    assert "c9" in h.outbox.refunded
    await h.command(ADMIN, "refund", "c9")  # Telegram: CHARGE_ALREADY_REFUNDED
    await h.settle()
    assert (await replies(h, ADMIN))[-1] == t("en", "admin_already_refunded", charge="c9")
    assert await h.balance(USER) == 1
    assert (
        await pool().fetchval("SELECT count(*) FROM ledger WHERE reason = 'payment_refunded'") == 1
    )
    await h.command(USER, "balance")
    await h.settle()
    assert (await replies(h, USER))[-1] == t("en", "balance", n=1)


async def test_styles_reload_keeps_old_ones_on_a_broken_file(
    harness: Start, tmp_path: Path
) -> None:
    styles = tmp_path / "styles.toml"
    styles.write_text(DEFAULT_FILE.read_text(), encoding="utf-8")
    h = await harness(styles_file=styles)
    styles.write_text(DEFAULT_FILE.read_text().replace("[styles.dance]", "[styles.waltz]"))
    assert h.app.reload_styles()
    assert "waltz" in h.app.supervisor.ctx.styles
    styles.write_text("[styles.broken\n")
    assert not h.app.reload_styles()
    assert "waltz" in h.app.supervisor.ctx.styles
