"""/broadcast: everyone not blocked gets it once, paced, and it resumes after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flick.i18n import t
from flick.models.db import pool
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness

ADMIN = 1


async def test_broadcast_reaches_everyone_not_blocked_and_resumes(
    database_url: str, storage: S3Storage, tmp_path: Path
) -> None:
    users = list(range(100, 130))
    async with EngineHarness(database_url, storage, tmp_path, admin_ids=[ADMIN], send_rate=20) as h:
        for uid in [ADMIN, *users]:
            await h.command(uid, "start")
        await h.settle()
        h.outbox.blocked.add(users[3])  # blocked the bot meanwhile
        await pool().execute("UPDATE users SET blocked = true WHERE telegram_id = $1", users[4])
        started = asyncio.get_running_loop().time()
        await h.command(ADMIN, "broadcast", "New styles are here!")
        await h.settle()
        # Stop in the middle: the pacing (10 messages/s here) keeps it running for ~3 s.
        while await pool().fetchval("SELECT sent FROM broadcasts") < 8:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        # Paced: half the send rate (10/s here), so 8 messages take at least 0.7 s. A lower
        # bound only: a slow machine makes it longer, never shorter.
        assert asyncio.get_running_loop().time() - started >= 0.7

    async with EngineHarness(
        database_url, storage, tmp_path, admin_ids=[ADMIN], send_rate=200, fresh=False, resume=False
    ) as h2:
        first = await pool().fetchrow("SELECT status, sent FROM broadcasts")
        assert first["status"] == "running" and first["sent"] < len(users)
        await h2.app.broadcaster.resume_all()
        await h2.app.broadcaster.wait()
        row = await pool().fetchrow("SELECT * FROM broadcasts")
        assert row["status"] == "done"
        got = {
            s.chat_id
            for s in h.outbox.sent + h2.outbox.sent
            if s.method == "send_text" and s.text == "New styles are here!"
        }
        expected = {ADMIN, *users} - {users[3], users[4]}
        assert got == expected
        # Each recipient once, but for at most the one in flight when the first run stopped.
        sends = [
            s.chat_id for s in h.outbox.sent + h2.outbox.sent if s.text == "New styles are here!"
        ]
        assert len(sends) - len(set(sends)) <= 1
        assert row["sent"] == len(expected) and row["failed"] == 1
        done = t(
            "en", "broadcast_done", id=row["id"], sent=row["sent"], failed=1, total=row["total"]
        )
        assert done in [s.text for s in h2.outbox.to(ADMIN)]
        assert await pool().fetchval("SELECT blocked FROM users WHERE telegram_id = $1", users[3])
