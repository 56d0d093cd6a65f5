"""All generation SQL, returning typed records. Status changes go through the lifecycle machine.

`advance` is the one way a status is written: the machine must accept the trigger, and the row
must still hold the status the machine started from (compare-and-set), or nothing is written. So
a runner moving to `delivering` and a /cancel refunding cannot both win. The money-carrying ends
(`fail`, `cancel`) are written by `flick.models.money` through `end` in the refund's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from loguru import logger

from flick.fsm.generation import ACTIVE, GenerationRecord, Status
from flick.models.db import pool
from flick.ops.logging import redact
from flick.retries import retry_transient

T = TypeVar("T")
#: How long a step's own write waits out a database blip: its result (a paid image, a
#: prediction id) must not be lost to one, or the step would be paid for again.
WRITE_BUDGET = 120.0


async def _retried(call: Callable[[], Awaitable[T]]) -> T:
    return await retry_transient(call, budget=WRITE_BUDGET)


# Columns a step may save besides the status. Names are fixed here, never taken from input.
_FIELDS = frozenset(
    {
        "combined_key",
        "video_key",
        "video_file_id",
        "prediction_id",
        "prediction_requested_at",
        "status_message_id",
        "image_usage",
        "predict_seconds",
        "cost_usd",
        "video_model",
    }
)

_COLUMNS = (
    'id, "user", style, status, photo1_key, photo2_key, combined_key, video_key, '
    "video_file_id, prediction_id, prediction_requested_at, status_message_id, charged, "
    "refunded, error_class, created_at, route, tier, video_model"
)
_SELECT = f"SELECT {_COLUMNS} FROM generations"


class RefusedTransition(Exception):  # noqa: N818 - a refusal, logged, never written
    """The machine refused a status change, or the row had moved on meanwhile."""


def _record(row: asyncpg.Record) -> GenerationRecord:
    return GenerationRecord(
        id=row["id"],
        user_id=row["user"],
        style=row["style"],
        photo_keys=(row["photo1_key"], row["photo2_key"]),
        status=Status(row["status"]),
        combined_key=row["combined_key"],
        video_key=row["video_key"],
        video_file_id=row["video_file_id"],
        prediction_id=row["prediction_id"],
        prediction_requested_at=row["prediction_requested_at"],
        status_message_id=row["status_message_id"],
        charged=row["charged"],
        refunded=row["refunded"],
        error_class=row["error_class"],
        created_at=row["created_at"],
        route=row["route"],
        tier=row["tier"],
        video_model=row["video_model"],
    )


def _values(fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ValueError(f"not generation fields: {sorted(unknown)}")
    names = list(fields)
    values = [
        json.dumps(v) if n == "image_usage" and v is not None else v for n, v in fields.items()
    ]
    return names, values


async def get(gen_id: int, conn: asyncpg.Connection | None = None) -> GenerationRecord | None:
    row = await (conn or pool()).fetchrow(f"{_SELECT} WHERE id = $1", gen_id)
    return _record(row) if row else None


async def insert(
    conn: asyncpg.Connection,
    *,
    user_id: int,
    style: str,
    photo_keys: tuple[str, str],
    request_key: str,
    image_provider: str,
    video_provider: str,
    charged: int = 1,
    route: str = "compose_animate",
    tier: str | None = None,
) -> GenerationRecord | None:
    """A new queued generation; None when this request already made one (a retried start)."""
    row = await conn.fetchrow(
        'INSERT INTO generations ("user", style, status, photo1_key, photo2_key, request_key, '
        "image_provider, video_provider, charged, route, tier) "
        "VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10) "
        f'ON CONFLICT ("user", request_key) DO NOTHING RETURNING {_COLUMNS}',
        user_id,
        style,
        photo_keys[0],
        photo_keys[1],
        request_key,
        image_provider,
        video_provider,
        charged,
        route,
        tier,
    )
    return _record(row) if row else None


async def by_request(conn: asyncpg.Connection, user_id: int, request_key: str) -> int | None:
    found = await conn.fetchval(
        'SELECT id FROM generations WHERE "user" = $1 AND request_key = $2', user_id, request_key
    )
    return int(found) if found is not None else None


async def save(record: GenerationRecord, **fields: Any) -> None:
    """Save what a step produced (no status change); the record is updated to match."""
    names, values = _values(fields)
    sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    await _retried(
        lambda: pool().execute(
            f"UPDATE generations SET {sets}, updated_at = now() WHERE id = $1", record.id, *values
        )
    )
    for name, value in fields.items():
        if hasattr(record, name):
            setattr(record, name, value)


async def save_video_key(record: GenerationRecord, key: str) -> None:
    """Save where the video is stored, once: on a `delivering` row that has no video yet.

    Raises RefusedTransition (and writes nothing) when the row has moved on without this run:
    another process took its job over (this one froze past its heartbeat) and stored, or sent,
    a copy of its own, which the row keeps.
    """
    saved = await _retried(
        lambda: pool().fetchval(
            "UPDATE generations SET video_key = $2, updated_at = now() "
            "WHERE id = $1 AND status = $3 AND video_key IS NULL RETURNING id",
            record.id,
            key,
            Status.DELIVERING.value,
        )
    )
    if saved is None:
        current = await get(record.id)
        if current is None or current.video_key != key:  # not our own write, retried
            if current is not None:
                record.status = current.status
            raise RefusedTransition(f"generation {record.id}: its video is stored elsewhere")
    record.video_key = key


async def advance(
    record: GenerationRecord,
    trigger: str,
    conn: asyncpg.Connection | None = None,
    **fields: Any,
) -> None:
    """Move a generation on: the machine must accept `trigger` and the row must not have moved.

    Raises RefusedTransition (and writes nothing) otherwise; the record then holds the row's
    current status, so the caller can see who won.
    """
    before = record.status
    target = record.target(trigger, **fields)
    if target is None:
        logger.bind(generation_id=record.id).warning("refused: {} from {}", trigger, before.value)
        raise RefusedTransition(f"generation {record.id}: {trigger} from {before.value}")
    names, values = _values(fields)
    sets = "".join(f", {name} = ${i + 4}" for i, name in enumerate(names))
    done = ", finished_at = now()" if target is Status.DONE else ""
    sql = (
        f"UPDATE generations SET status = $3{sets}{done}, updated_at = now() "
        "WHERE id = $1 AND status = $2 RETURNING status"
    )
    if conn is not None:
        status = await conn.fetchval(sql, record.id, before.value, target.value, *values)
    else:
        status = await _retried(
            lambda: pool().fetchval(sql, record.id, before.value, target.value, *values)
        )
    if status is None:
        current = await get(record.id, conn)
        if current is not None and current.status is target and before is not target:
            # Our own write, whose answer a dropped connection lost before the retry.
            status = target.value
    if status is None:
        record.status = current.status if current else record.status
        logger.bind(generation_id=record.id).info(
            "{} refused: the generation is {} now", trigger, record.status.value
        )
        raise RefusedTransition(f"generation {record.id}: {trigger} lost to {record.status}")
    record.trigger(trigger, **fields)
    for name, value in fields.items():
        setattr(record, name, value)


async def end(
    conn: asyncpg.Connection, gen_id: int, trigger: str, error_class: str, error_message: str
) -> GenerationRecord | None:
    """Inside a refund's transaction: `fail` or `cancel` the generation, marking it refunded.

    Locks the row; None when the machine refuses (it ended already, or /cancel came too late).
    """
    row = await conn.fetchrow(f"{_SELECT} WHERE id = $1 FOR UPDATE", gen_id)
    if row is None:
        return None
    record = _record(row)
    before = record.status
    if not record.trigger(trigger):
        logger.bind(generation_id=gen_id).info("{} refused: it is {}", trigger, before.value)
        return None
    await conn.execute(
        "UPDATE generations SET status = $2, refunded = true, error_class = $3, "
        "error_message = $4, finished_at = now(), updated_at = now() WHERE id = $1",
        gen_id,
        record.status.value,
        error_class[:64],
        redact(error_message)[:2000],
    )
    record.refunded = True
    return record


async def unfinished() -> list[GenerationRecord]:
    rows = await pool().fetch(
        f"{_SELECT} WHERE status = ANY($1::text[]) ORDER BY id", [s.value for s in ACTIVE]
    )
    return [_record(r) for r in rows]


async def recent(user_id: int, limit: int = 10) -> list[GenerationRecord]:
    rows = await pool().fetch(
        f'{_SELECT} WHERE "user" = $1 ORDER BY id DESC LIMIT $2', user_id, limit
    )
    return [_record(r) for r in rows]


async def held_credits(conn: asyncpg.Connection, user_id: int) -> int:
    """Credits taken by this user's generations that have not ended: they may still come back."""
    held = await conn.fetchval(
        'SELECT COALESCE(SUM(charged), 0) FROM generations WHERE "user" = $1 '
        "AND status = ANY($2::text[])",
        user_id,
        [s.value for s in ACTIVE],
    )
    return int(held)
