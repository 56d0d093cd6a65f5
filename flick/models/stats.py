"""Read-only figures for the operator: /stats, /user, and finding a user by id or name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flick.models.db import pool
from flick.untrusted import parse_int


async def stats(days: int) -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(days=days)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    p = pool()
    users = await p.fetchval("SELECT count(*) FROM users")
    new_today = await p.fetchval("SELECT count(*) FROM users WHERE created_at >= $1", today)
    new_period = await p.fetchval("SELECT count(*) FROM users WHERE created_at >= $1", since)
    outcomes = await p.fetch(
        "SELECT status, count(*) AS n FROM generations WHERE created_at >= $1 "
        "GROUP BY status ORDER BY status",
        since,
    )
    money = await p.fetchrow(
        "SELECT COALESCE(SUM(stars_amount), 0) AS stars, count(*) AS n FROM payments "
        "WHERE created_at >= $1 AND status = 'paid'",
        since,
    )
    cost = await p.fetchval(
        "SELECT COALESCE(SUM(cost_usd), 0) FROM generations WHERE created_at >= $1", since
    )
    return {
        "days": days,
        "users": users,
        "new_today": new_today,
        "new_period": new_period,
        "outcomes": {r["status"]: r["n"] for r in outcomes},
        "stars": money["stars"],
        "payments": money["n"],
        "cost_usd": float(cost),
    }


async def find_users(ref: str) -> list[int]:
    """Every user an id or @username names: more than one means the reference is ambiguous."""
    ref = ref.strip()
    number = parse_int(ref, signed=True)
    if number is not None:
        rows = await pool().fetch("SELECT telegram_id FROM users WHERE telegram_id = $1", number)
    else:
        rows = await pool().fetch(
            "SELECT telegram_id FROM users WHERE lower(username) = lower($1) ORDER BY telegram_id",
            ref.lstrip("@"),
        )
    return [int(r["telegram_id"]) for r in rows]


async def user_card(user_id: int) -> dict[str, Any]:
    p = pool()
    user = await p.fetchrow(
        "SELECT telegram_id, username, first_name, balance, blocked, created_at, last_seen_at "
        "FROM users WHERE telegram_id = $1",
        user_id,
    )
    payments = await p.fetch(
        "SELECT telegram_payment_charge_id, stars_amount, credits, status, created_at "
        'FROM payments WHERE "user" = $1 ORDER BY id DESC LIMIT 5',
        user_id,
    )
    gens = await p.fetch(
        'SELECT status, count(*) AS n FROM generations WHERE "user" = $1 GROUP BY status', user_id
    )
    return {
        "user": dict(user) if user else None,
        "payments": [dict(r) for r in payments],
        "generations": {r["status"]: r["n"] for r in gens},
    }


async def growth(days: int) -> dict[str, Any]:
    """Revenue by source and the credits given away, over the last `days` days."""
    since = datetime.now(UTC) - timedelta(days=days)
    p = pool()
    paid = await p.fetch(
        "SELECT kind, count(*) AS n, COALESCE(SUM(stars_amount), 0) AS stars FROM payments "
        "WHERE created_at >= $1 AND status = 'paid' GROUP BY kind",
        since,
    )
    by_kind = {r["kind"]: (r["n"], r["stars"]) for r in paid}
    new_subs = await p.fetchval("SELECT count(*) FROM subscriptions WHERE created_at >= $1", since)
    refunded = await p.fetchval(
        "SELECT COALESCE(SUM(stars_amount), 0) FROM payments WHERE refunded_at >= $1", since
    )
    given = await p.fetch(
        "SELECT reason, COALESCE(SUM(delta), 0) AS credits FROM ledger WHERE created_at >= $1 "
        "AND reason = ANY($2::text[]) GROUP BY reason",
        since,
        ["promo", "referral", "bonus", "plan_expired"],
    )
    credits = {r["reason"]: int(r["credits"]) for r in given}
    now = await p.fetchrow(
        "SELECT count(*) AS active, count(*) FILTER (WHERE renews) AS renewing "
        "FROM subscriptions WHERE period_end > now()"
    )
    subs_n, subs_stars = by_kind.get("subscription", (0, 0))
    return {
        "package_payments": by_kind.get("package", (0, 0))[0],
        "package_stars": by_kind.get("package", (0, 0))[1],
        "sub_payments": subs_n,
        "sub_stars": subs_stars,
        "sub_new": new_subs,
        "refunded_stars": refunded,
        "promo": credits.get("promo", 0),
        "referral": credits.get("referral", 0),
        "bonus": credits.get("bonus", 0),
        "expired": -credits.get("plan_expired", 0),
        "sub_active": now["active"],
        "sub_renewing": now["renewing"],
    }
