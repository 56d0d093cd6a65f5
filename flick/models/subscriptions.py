"""Subscriptions: reads, and the renewal switch. Paying for one is money
(`flick.models.money.credit_subscription`); only the user's own actor writes these rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from flick.models.db import pool


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    id: int
    user_id: int
    payload: str
    plan: str
    credits: int
    stars: int
    charge_id: str
    period_end: datetime
    renews: bool
    canceled_by: str | None
    payment_failed: bool
    renewals: int

    @property
    def active(self) -> bool:
        """Paid for up to now (renewing or not)."""
        return self.period_end > datetime.now(UTC)


_SELECT = (
    'SELECT id, "user", payload, plan, credits, stars, charge_id, period_end, renews, '
    "canceled_by, payment_failed, renewals FROM subscriptions"
)


def _record(row: asyncpg.Record) -> SubscriptionRecord:
    return SubscriptionRecord(
        row["id"], row["user"], row["payload"], row["plan"], row["credits"], row["stars"],
        row["charge_id"], row["period_end"], row["renews"], row["canceled_by"],
        row["payment_failed"], row["renewals"],
    )  # fmt: skip


async def current(user_id: int) -> SubscriptionRecord | None:
    """The user's subscription that lasts longest (the one /subscription is about)."""
    row = await pool().fetchrow(
        f'{_SELECT} WHERE "user" = $1 ORDER BY period_end DESC, id DESC LIMIT 1', user_id
    )
    return _record(row) if row else None


async def get(user_id: int, sub_id: int) -> SubscriptionRecord | None:
    """One of the user's subscriptions (None for anyone else's)."""
    row = await pool().fetchrow(f'{_SELECT} WHERE id = $1 AND "user" = $2', sub_id, user_id)
    return _record(row) if row else None


async def by_payload(user_id: int, payload: str) -> SubscriptionRecord | None:
    row = await pool().fetchrow(
        f'{_SELECT} WHERE "user" = $1 AND payload = $2', user_id, payload[:128]
    )
    return _record(row) if row else None


async def set_renewal(sub_id: int, renews: bool, canceled_by: str | None) -> None:
    await pool().execute(
        "UPDATE subscriptions SET renews = $2, canceled_by = $3, updated_at = now() WHERE id = $1",
        sub_id,
        renews,
        canceled_by,
    )


async def set_payment_failed(sub_id: int) -> None:
    await pool().execute(
        "UPDATE subscriptions SET payment_failed = true, updated_at = now() WHERE id = $1", sub_id
    )
