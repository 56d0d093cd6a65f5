"""A user's row besides money: the saved conversation, consent, language, the blocked flag.

Only the user's own actor calls these (the database stays the truth; the actor keeps a copy).
"""

from __future__ import annotations

import json
from typing import Any

from flick.models.db import pool


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
