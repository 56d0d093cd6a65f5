"""Reads and writes that do not move money: sessions, generation steps, orders, lookups."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flick.models.ledger import pool

UNFINISHED = ("queued", "composing", "animating", "delivering")


async def save_session(
    user_id: int, state: str, data: dict[str, Any], *, consent: bool = False
) -> None:
    """Save a conversation; with `consent`, record the user's consent in the same statement."""
    await pool().execute(
        "WITH agreed AS (UPDATE users SET consent_at = now() "
        "WHERE $4 AND telegram_id = $1 AND consent_at IS NULL) "
        'INSERT INTO user_sessions ("user", state, data, updated_at) VALUES ($1, $2, $3, now()) '
        'ON CONFLICT ("user") DO UPDATE SET state = EXCLUDED.state, data = EXCLUDED.data, '
        "updated_at = now()",
        user_id,
        state,
        json.dumps(data),
        consent,
    )


async def set_blocked(user_id: int, blocked: bool = True) -> None:
    await pool().execute("UPDATE users SET blocked = $2 WHERE telegram_id = $1", user_id, blocked)


async def set_language(user_id: int, language: str) -> None:
    await pool().execute("UPDATE users SET language = $2 WHERE telegram_id = $1", user_id, language)


# Generation steps. Column names are fixed here, never taken from input.
_GEN_COLUMNS = frozenset(
    {
        "status",
        "combined_key",
        "video_key",
        "video_file_id",
        "prediction_id",
        "prediction_requested_at",
        "status_message_id",
        "image_usage",
        "predict_seconds",
        "cost_usd",
        "error_class",
        "error_message",
        "finished_at",
    }
)


async def update_generation(gen_id: int, **fields: Any) -> None:
    unknown = set(fields) - _GEN_COLUMNS
    if unknown:
        raise ValueError(f"not generation columns: {sorted(unknown)}")
    names = list(fields)
    values = [
        json.dumps(v) if n == "image_usage" and v is not None else v for n, v in fields.items()
    ]
    sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    await pool().execute(
        f"UPDATE generations SET {sets}, updated_at = now() WHERE id = $1", gen_id, *values
    )


async def finish_generation(gen_id: int, video_file_id: str | None) -> bool:
    """Mark delivered; False if it had already ended (e.g. canceled meanwhile)."""
    result: str = await pool().execute(
        "UPDATE generations SET status = 'done', video_file_id = $2, finished_at = now(), "
        "updated_at = now() WHERE id = $1 AND status = 'delivering' AND NOT refunded",
        gen_id,
        video_file_id,
    )
    return result.endswith(" 1")


async def get_generation(gen_id: int) -> dict[str, Any] | None:
    row = await pool().fetchrow(
        'SELECT *, "user" AS user_id FROM generations WHERE id = $1', gen_id
    )
    return dict(row) if row else None


async def unfinished_generations() -> list[dict[str, Any]]:
    rows = await pool().fetch(
        'SELECT id, "user" AS user_id FROM generations WHERE status = ANY($1::text[]) '
        "AND NOT refunded ORDER BY id",
        list(UNFINISHED),
    )
    return [dict(r) for r in rows]


async def recent_generations(user_id: int, limit: int = 10) -> list[dict[str, Any]]:
    rows = await pool().fetch(
        "SELECT id, style, status, video_key, video_file_id, created_at FROM generations "
        'WHERE "user" = $1 ORDER BY id DESC LIMIT $2',
        user_id,
        limit,
    )
    return [dict(r) for r in rows]


async def create_order(user_id: int, credits: int, stars: int, ttl_seconds: int) -> uuid.UUID:
    order_id = uuid.uuid4()
    await pool().execute(
        'INSERT INTO orders (id, "user", package_credits, stars, status, created_at, expires_at) '
        "VALUES ($1, $2, $3, $4, 'pending', now(), $5)",
        order_id,
        user_id,
        credits,
        stars,
        datetime.now(UTC) + timedelta(seconds=ttl_seconds),
    )
    return order_id


async def get_order(order_id: uuid.UUID) -> dict[str, Any] | None:
    row = await pool().fetchrow(
        'SELECT id, "user" AS user_id, package_credits, stars, status, expires_at FROM orders '
        "WHERE id = $1",
        order_id,
    )
    return dict(row) if row else None


async def recent_payments(user_id: int, limit: int = 5) -> list[dict[str, Any]]:
    rows = await pool().fetch(
        "SELECT telegram_payment_charge_id, stars_amount, credits, status, created_at "
        'FROM payments WHERE "user" = $1 ORDER BY id DESC LIMIT $2',
        user_id,
        limit,
    )
    return [dict(r) for r in rows]
