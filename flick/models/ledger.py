"""Money: every balance change happens in one transaction together with the row that explains it.

These are the only functions that touch `users.balance`. Each returns the new balance (or None when
nothing happened, e.g. a replayed payment), so the user's actor can keep its in-memory copy exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from flick.models.db import DB


def pool() -> asyncpg.Pool:
    return DB.pool


async def _apply(
    conn: asyncpg.Connection,
    user_id: int,
    delta: int,
    reason: str,
    *,
    generation_id: int | None = None,
    payment_id: int | None = None,
    note: str = "",
) -> int:
    """Change a balance and write its ledger row. Must run inside the caller's transaction."""
    balance: int = await conn.fetchval(
        "UPDATE users SET balance = balance + $2 WHERE telegram_id = $1 RETURNING balance",
        user_id,
        delta,
    )
    await conn.execute(
        'INSERT INTO ledger ("user", delta, balance_after, reason, generation, payment, note) '
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        user_id,
        delta,
        balance,
        reason,
        generation_id,
        payment_id,
        note,
    )
    return balance


@dataclass(frozen=True, slots=True)
class UserRow:
    balance: int
    language: str | None
    language_code: str | None
    consent: bool
    blocked: bool
    created: bool
    session: tuple[str, dict[str, Any]] | None = None


# One statement, so one round trip: an actor's load is on the path of a new user's first reply.
# A new user gets their free credits and the ledger row that explains them in the same statement
# (a single statement is its own transaction); `xmax = 0` tells a fresh insert from an update.
_ENSURE_USER = """
WITH u AS (
    INSERT INTO users (telegram_id, username, first_name, language_code, balance)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (telegram_id) DO UPDATE SET
        username = EXCLUDED.username,
        first_name = EXCLUDED.first_name,
        language_code = COALESCE(EXCLUDED.language_code, users.language_code),
        last_seen_at = now()
    RETURNING telegram_id, balance, language, language_code,
        consent_at IS NOT NULL AS consent, blocked, (xmax = 0) AS created
), free AS (
    INSERT INTO ledger ("user", delta, balance_after, reason, note)
    SELECT telegram_id, $5, balance, 'free', 'welcome credits' FROM u
    WHERE u.created AND $5 > 0
)
SELECT u.*, s.state AS session_state, s.data AS session_data
FROM u LEFT JOIN user_sessions s ON s."user" = u.telegram_id
"""


async def ensure_user(
    user_id: int,
    username: str | None,
    first_name: str | None,
    language_code: str | None,
    free_credits: int,
) -> UserRow:
    """Load a user and their saved session, creating the user (with free credits, once)."""
    row = await pool().fetchrow(
        _ENSURE_USER, user_id, username, first_name, language_code, max(free_credits, 0)
    )
    state = row["session_state"]
    return UserRow(
        balance=row["balance"],
        language=row["language"],
        language_code=row["language_code"],
        consent=row["consent"],
        blocked=row["blocked"],
        created=row["created"],
        session=None if state is None else (state, json.loads(row["session_data"])),
    )


async def start_generation(
    user_id: int, style: str, photo_keys: tuple[str, str], image_provider: str, video_provider: str
) -> tuple[int, int] | None:
    """Take one credit and write the generation row. None when the balance is too low."""
    async with pool().acquire() as conn, conn.transaction():
        ok = await conn.fetchval(
            "SELECT balance >= 1 FROM users WHERE telegram_id = $1 FOR UPDATE", user_id
        )
        if not ok:
            return None
        gen_id: int = await conn.fetchval(
            'INSERT INTO generations ("user", style, status, photo1_key, photo2_key, '
            "image_provider, video_provider, charged) VALUES ($1, $2, 'queued', $3, $4, $5, $6, 1) "
            "RETURNING id",
            user_id,
            style,
            photo_keys[0],
            photo_keys[1],
            image_provider,
            video_provider,
        )
        balance = await _apply(conn, user_id, -1, "generation", generation_id=gen_id)
    return gen_id, balance


async def refund_generation(
    gen_id: int, status: str, error_class: str | None, error_message: str | None
) -> int | None:
    """End a generation that failed or was canceled and give its credit back, exactly once."""
    async with pool().acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE generations SET status = $2, refunded = true, error_class = $3, "
            "error_message = $4, finished_at = now(), updated_at = now() "
            "WHERE id = $1 AND NOT refunded AND status <> 'done' RETURNING \"user\", charged",
            gen_id,
            status,
            error_class,
            (error_message or "")[:2000],
        )
        if row is None:
            return None
        return await _apply(conn, row["user"], row["charged"], "refund", generation_id=gen_id)


@dataclass(frozen=True, slots=True)
class Credited:
    payment_id: int
    balance: int


async def credit_payment(
    user_id: int,
    *,
    charge_id: str,
    provider_charge_id: str | None,
    payload: str,
    currency: str,
    stars: int,
    credits: int,
    order_id: Any | None,
    source: str = "update",
) -> Credited | None:
    """Record a successful payment and credit it. None when this charge id was seen before."""
    async with pool().acquire() as conn, conn.transaction():
        payment_id = await conn.fetchval(
            'INSERT INTO payments ("user", telegram_payment_charge_id, provider_payment_charge_id, '
            '"order", invoice_payload, currency, stars_amount, credits, status, source) '
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'paid', $9) "
            "ON CONFLICT (telegram_payment_charge_id) DO NOTHING RETURNING id",
            user_id,
            charge_id,
            provider_charge_id,
            order_id,
            payload[:255],
            currency,
            stars,
            credits,
            source,
        )
        if payment_id is None:
            return None
        if order_id is not None:
            await conn.execute("UPDATE orders SET status = 'paid' WHERE id = $1", order_id)
        balance = await _apply(conn, user_id, credits, "purchase", payment_id=payment_id)
    return Credited(payment_id, balance)


@dataclass(frozen=True, slots=True)
class Refunded:
    user_id: int
    balance: int
    taken: int
    already_spent: int


async def refund_payment(charge_id: str, note: str = "") -> Refunded | None:
    """Mark a payment refunded and take its credits back, never below zero. Once per charge."""
    async with pool().acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE payments SET status = 'refunded', refunded_at = now() "
            "WHERE telegram_payment_charge_id = $1 AND status = 'paid' "
            'RETURNING id, "user", credits',
            charge_id,
        )
        if row is None:
            return None
        user_id = row["user"]
        balance = await conn.fetchval(
            "SELECT balance FROM users WHERE telegram_id = $1 FOR UPDATE", user_id
        )
        taken = min(row["credits"], balance)
        spent = row["credits"] - taken
        text = note or (f"{spent} credit(s) were already spent" if spent else "")
        balance = await _apply(
            conn, user_id, -taken, "payment_refunded", payment_id=row["id"], note=text
        )
    return Refunded(user_id, balance, taken, spent)


async def grant(user_id: int, credits: int, note: str) -> int:
    """An operator's grant (or a correction, when negative); never below zero."""
    async with pool().acquire() as conn, conn.transaction():
        balance = await conn.fetchval(
            "SELECT balance FROM users WHERE telegram_id = $1 FOR UPDATE", user_id
        )
        if balance is None:
            raise LookupError(f"unknown user {user_id}")
        delta = max(credits, -balance)
        return await _apply(conn, user_id, delta, "grant", note=note)
