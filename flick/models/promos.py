"""Promo codes: the operator's side (create, list, disable) and reads. Redeeming is money:
`flick.models.money.redeem_promo`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from flick.models.db import pool


@dataclass(frozen=True, slots=True)
class PromoCode:
    code: str
    credits: int
    max_uses: int
    used: int
    expires_at: datetime | None
    disabled: bool
    expired: bool

    @property
    def state(self) -> str:
        """active, disabled, expired or used_up."""
        if self.disabled:
            return "disabled"
        if self.expired:
            return "expired"
        return "used_up" if self.used >= self.max_uses else "active"


_SELECT = (
    "SELECT code, credits, max_uses, used, expires_at, disabled_at IS NOT NULL AS disabled, "
    "(expires_at IS NOT NULL AND expires_at <= now()) AS expired FROM promo_codes"
)


def _code(row: asyncpg.Record) -> PromoCode:
    return PromoCode(
        row["code"], row["credits"], row["max_uses"], row["used"], row["expires_at"],
        row["disabled"], row["expired"],
    )  # fmt: skip


async def create(
    code: str, credits: int, max_uses: int, expires_at: datetime | None, admin_id: int
) -> bool:
    """A new code; False when one with that name exists (a disabled one included)."""
    made = await pool().fetchval(
        "INSERT INTO promo_codes (code, credits, max_uses, used, expires_at, created_by, "
        "created_at) VALUES ($1, $2, $3, 0, $4, $5, now()) ON CONFLICT (code) DO NOTHING "
        "RETURNING id",
        code,
        credits,
        max_uses,
        expires_at,
        admin_id,
    )
    return made is not None


async def disable(code: str) -> str:
    """disabled, already (it was) or unknown."""
    changed = await pool().fetchval(
        "UPDATE promo_codes SET disabled_at = now() WHERE code = $1 AND disabled_at IS NULL "
        "RETURNING id",
        code,
    )
    if changed is not None:
        return "disabled"
    known = await pool().fetchval("SELECT id FROM promo_codes WHERE code = $1", code)
    return "already" if known is not None else "unknown"


async def get(code: str) -> PromoCode | None:
    row = await pool().fetchrow(f"{_SELECT} WHERE code = $1", code)
    return _code(row) if row else None


async def recent(limit: int = 30) -> list[PromoCode]:
    rows = await pool().fetch(f"{_SELECT} ORDER BY id DESC LIMIT $1", limit)
    return [_code(r) for r in rows]


async def of_user(user_id: int, limit: int = 10) -> list[tuple[str, int, datetime]]:
    """The codes a user redeemed, newest first: (code, credits, when)."""
    rows = await pool().fetch(
        "SELECT c.code, r.credits, r.created_at FROM promo_redemptions r "
        'JOIN promo_codes c ON c.id = r.code WHERE r."user" = $1 ORDER BY r.id DESC LIMIT $2',
        user_id,
        limit,
    )
    return [(r["code"], r["credits"], r["created_at"]) for r in rows]
