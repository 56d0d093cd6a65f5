"""Which stored photos are still needed: the photo sweeper never deletes these."""

from __future__ import annotations

from flick.fsm.generation import ACTIVE
from flick.models.db import pool

# A generation queued or under way reads its photos (a resumed one too); a conversation holds
# the photos collected so far (waiting for the second one, or for credit).
_NEEDED = """
SELECT photo1_key AS key FROM generations WHERE status = ANY($1::text[])
UNION SELECT photo2_key FROM generations WHERE status = ANY($1::text[])
UNION SELECT jsonb_array_elements_text(data -> 'photos') FROM user_sessions
    WHERE jsonb_typeof(data -> 'photos') = 'array'
"""


async def needed() -> set[str]:
    rows = await pool().fetch(_NEEDED, [s.value for s in ACTIVE])
    return {row["key"] for row in rows if row["key"]}
