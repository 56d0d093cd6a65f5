"""The journal of handled Telegram updates, so a redelivery after a restart has no second effect.

Written in batches (one statement per flush, not one per update: per-update round trips are the
engine's main cost), read back once per actor start (`money.open_account` loads a user's newest
ids), and pruned by age: Telegram does not redeliver updates days old.
"""

from __future__ import annotations

from flick.models.db import pool


async def record(entries: list[tuple[int, str]]) -> None:
    if not entries:
        return
    users, ids = zip(*entries, strict=True)
    await pool().execute(
        'INSERT INTO handled_updates ("user", event_id) '
        "SELECT * FROM unnest($1::bigint[], $2::text[]) "
        'ON CONFLICT ("user", event_id) DO NOTHING',
        list(users),
        [i[:128] for i in ids],
    )


async def prune(keep_days: float) -> int:
    result: str = await pool().execute(
        "DELETE FROM handled_updates WHERE handled_at < now() - make_interval(secs => $1)",
        keep_days * 86400,
    )
    return int(result.rsplit(" ", 1)[-1])
