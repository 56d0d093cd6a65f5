"""A style press is answered before its session save (#19), as the consent is; the save still
lands before the actor takes the user's next message.

To see the reply while the save has not landed, the test's own transaction locks the user's
saved session: PostgreSQL makes Flick's save wait for it, and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from flick.i18n import t
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools

Harness = Callable[..., Awaitable[EngineHarness]]
UID = 7501
SEND_PHOTOS = t("en", "send_photos", style="🤗 Hug")


async def save_waiting() -> bool:
    found = await pool().fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%INSERT INTO user_sessions%'"
    )
    return bool(found)


async def test_a_style_is_answered_before_its_session_is_saved(
    harness: Harness, database_url: str, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "create")
    await h.settle()
    await h.press(UID, "consent", h.last_keyboard(UID).message_id)
    await h.settle()
    before = len(tools.texts(h, UID))
    lock = await asyncpg.connect(database_url)
    try:
        await lock.execute("BEGIN")
        await lock.execute('SELECT 1 FROM user_sessions WHERE "user" = $1 FOR UPDATE', UID)
        await h.pick_style(UID, "hug")
        await tools.wait_for(save_waiting, "Flick's save of the style to wait")
        # The actor is still in the press's handler (its save waits), and the reply is out.
        assert h.app.supervisor.actors[UID].busy
        assert tools.texts(h, UID)[before:] == [SEND_PHOTOS]
        assert (await tools.saved(UID))[0] == tools.State.CHOOSING_STYLE.value  # not saved yet
        await h.photo(UID, tools.jpeg("red"))  # the next message waits for the save
    finally:
        await lock.execute("ROLLBACK")
        await lock.close()
    await h.settle()
    state, data = await tools.saved(UID)
    assert state == tools.State.WAITING_FOR_PHOTOS.value and len(data["photos"]) == 1
    assert tools.texts(h, UID)[before:] == [
        SEND_PHOTOS,
        t("en", "photo_one_more"),
    ]
