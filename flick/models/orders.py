"""Orders (what an invoice is for) and reads of payments. Crediting lives in `money`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flick.models.db import pool


@dataclass(frozen=True, slots=True)
class Order:
    id: uuid.UUID
    user_id: int
    credits: int  # everything it buys, the bonus included (a plan: credits per period)
    stars: int
    status: str  # pending, paid, canceled
    expires_at: datetime
    bonus: int = 0
    plan: str | None = None  # a subscription plan's key; None: a package


async def create(
    user_id: int,
    credits: int,
    stars: int,
    ttl_seconds: int,
    *,
    bonus: int = 0,
    plan: str | None = None,
) -> uuid.UUID:
    """A pending order: a package (`credits` with `bonus` included) or a `plan`'s first period."""
    order_id = uuid.uuid4()
    await pool().execute(
        'INSERT INTO orders (id, "user", package_credits, stars, bonus, plan, status, '
        "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', now(), $7)",
        order_id,
        user_id,
        credits,
        stars,
        bonus,
        plan,
        datetime.now(UTC) + timedelta(seconds=ttl_seconds),
    )
    return order_id


async def cancel(order_id: uuid.UUID) -> None:
    """An order whose invoice never reached the user: it can never be paid."""
    await pool().execute(
        "UPDATE orders SET status = 'canceled' WHERE id = $1 AND status = 'pending'", order_id
    )


async def get(order_id: uuid.UUID) -> Order | None:
    row = await pool().fetchrow(
        'SELECT id, "user", package_credits, stars, status, expires_at, bonus, plan '
        "FROM orders WHERE id = $1",
        order_id,
    )
    if row is None:
        return None
    return Order(
        row["id"], row["user"], row["package_credits"], row["stars"], row["status"],
        row["expires_at"], row["bonus"], row["plan"],
    )  # fmt: skip


async def recent_payments(user_id: int, limit: int = 5) -> list[dict[str, Any]]:
    rows = await pool().fetch(
        "SELECT telegram_payment_charge_id, stars_amount, credits, status, created_at, kind "
        'FROM payments WHERE "user" = $1 ORDER BY id DESC LIMIT $2',
        user_id,
        limit,
    )
    return [dict(r) for r in rows]


async def payment_owner(charge_id: str) -> int | None:
    found = await pool().fetchval(
        'SELECT "user" FROM payments WHERE telegram_payment_charge_id = $1', charge_id
    )
    return int(found) if found is not None else None


async def known_charges(charge_ids: list[str]) -> set[str]:
    """Which of these Telegram charge ids are recorded already (credited or refunded)."""
    rows = await pool().fetch(
        "SELECT telegram_payment_charge_id FROM payments "
        "WHERE telegram_payment_charge_id = ANY($1::text[])",
        charge_ids,
    )
    return {r["telegram_payment_charge_id"] for r in rows}


async def payment_kind(charge_id: str) -> str | None:
    """package or subscription, for a recorded charge; None when unknown."""
    found = await pool().fetchval(
        "SELECT kind FROM payments WHERE telegram_payment_charge_id = $1", charge_id
    )
    return str(found) if found is not None else None
