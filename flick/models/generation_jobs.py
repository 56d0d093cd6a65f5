"""Generation work as pgqueuer jobs: what is handed over, in the caller's transaction.

A paid generation is handed over in the same transaction that charged it
(`money.start_generation`), so there is never a charge without its job nor a job without its
row. The payload is only the generation's id: price, style and user come from the row, never
from a job. Two entrypoints:

- `generate`: compose and animate (and, in the process holding the Telegram session, deliver).
  Its concurrency limit is the AI bound, enforced by pgqueuer in PostgreSQL across every host.
- `settle`: for the gateway only: deliver a video a worker stored, or tell the user's actor that
  a worker's generation failed (the actor refunds: every write about a user goes through it).

The active gateway publishes its configuration version (`publish_version`); a worker whose
version differs leaves every job (reported) instead of making paid generations with styles or
models the gateway does not have. Each job also carries the version it was handed over with,
for the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg
from pgqueuer import AsyncpgDriver, Queries

from flick.models.db import pool

GENERATE = "generate"
SETTLE = "settle"
#: The header a job's configuration version travels in.
VERSION_HEADER = "flick-config"

_version = ""


def set_version(version: str) -> None:
    """The configuration version this process hands jobs over with (set once at start)."""
    global _version
    _version = version


def version() -> str:
    return _version


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker hands back to the gateway for a generation it ran."""

    generation_id: int
    #: None: the video is stored and waits to be sent. Else the error's kind, user reason, text.
    error: tuple[str, str, str] | None = None
    recipient_gone: bool = False

    def dump(self) -> bytes:
        return json.dumps(
            {"g": self.generation_id, "e": self.error, "gone": self.recipient_gone}
        ).encode()

    @classmethod
    def load(cls, payload: bytes) -> Outcome:
        data = json.loads(payload)
        error = data.get("e")
        return cls(
            int(data["g"]),
            (str(error[0]), str(error[1]), str(error[2])) if error else None,
            bool(data.get("gone")),
        )


def generation_of(payload: bytes | None) -> int:
    if not payload:
        raise ValueError("a generation job without a payload")
    return int(json.loads(payload)["g"])


async def hand_over(conn: asyncpg.Connection | None, generation_id: int) -> bool:
    """Queue the generation's `generate` job, unless one is queued or running (then False).

    On `conn` inside the caller's transaction, or on a pooled connection of its own.
    """
    if conn is None:
        async with pool().acquire() as own:
            return await hand_over(own, generation_id)
    ids = await Queries(AsyncpgDriver(conn)).enqueue(
        GENERATE,
        json.dumps({"g": generation_id}).encode(),
        dedupe_key=f"{GENERATE}:{generation_id}",
        headers={VERSION_HEADER: _version},
        on_conflict="skip",
    )
    return ids[0] is not None


async def withdraw(conn: asyncpg.Connection, generation_id: int) -> None:
    """Inside a refund's transaction: a job still waiting for a seat goes, so it neither holds a
    place in the queue nor is told one (a running job finds its generation ended)."""
    await conn.execute(
        "DELETE FROM pgqueuer WHERE dedupe_key = $1 AND status = 'queued'",
        f"{GENERATE}:{generation_id}",
    )


async def hand_back(outcome: Outcome) -> None:
    """Queue a worker's outcome for the gateway (`settle`); once per generation at a time."""
    async with pool().acquire() as conn:
        await Queries(AsyncpgDriver(conn)).enqueue(
            SETTLE,
            outcome.dump(),
            dedupe_key=f"{SETTLE}:{outcome.generation_id}",
            headers={VERSION_HEADER: _version},
            on_conflict="skip",
        )


async def publish_version() -> None:
    """This process's version is the one in force (the active gateway, at its start)."""
    await pool().execute(
        "INSERT INTO work_config (version) VALUES ($1) ON CONFLICT (singleton) "
        "DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
        _version,
    )


async def version_in_force() -> str | None:
    found = await pool().fetchval("SELECT version FROM work_config")
    return str(found) if found is not None else None


async def reclaim_orphans() -> int:
    """On a database no other process can reach (the embedded one): the jobs a killed
    predecessor had picked go back to the queue now, not after their heartbeat timeout."""
    done = await pool().execute(
        "UPDATE pgqueuer SET status = 'queued', slot = NULL, queue_manager_id = NULL, "
        "execute_after = now(), updated = now() WHERE status = 'picked'"
    )
    return int(done.split()[-1])


async def queued_in_order(limit: int = 1000) -> list[int]:
    """The generations waiting for an AI seat, in the order pgqueuer serves them."""
    rows = await pool().fetch(
        "SELECT payload FROM pgqueuer WHERE entrypoint = $1 AND status = 'queued' "
        "ORDER BY priority DESC, id LIMIT $2",
        GENERATE,
        limit,
    )
    return [generation_of(r["payload"]) for r in rows]


async def waiting_for_a_seat(min_wait: float, seats: int) -> list[int]:
    """The generations that have waited `min_wait` seconds or more while all `seats` AI seats
    were taken, in service order: those worth telling their place (a job with a seat free is
    taken within moments, and "number 1 in the queue" would be news from nowhere)."""
    rows = await pool().fetch(
        "SELECT payload FROM pgqueuer WHERE entrypoint = $1 AND status = 'queued' "
        "AND created <= now() - make_interval(secs => $2) "
        "AND (SELECT count(*) FROM pgqueuer WHERE entrypoint = $1 AND status = 'picked') >= $3 "
        "ORDER BY priority DESC, id LIMIT 1000",
        GENERATE,
        min_wait,
        seats,
    )
    return [generation_of(r["payload"]) for r in rows]


async def pending(generation_id: int) -> bool:
    """Has this generation a job queued or running (for a resume deciding to hand it over)?"""
    found = await pool().fetchval(
        "SELECT 1 FROM pgqueuer WHERE dedupe_key = ANY($1::text[]) "
        "AND status IN ('queued', 'picked')",
        [f"{GENERATE}:{generation_id}", f"{SETTLE}:{generation_id}"],
    )
    return found is not None
