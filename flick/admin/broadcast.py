"""/broadcast: one message to every user who has not blocked the bot, paced and resumable.

The broadcast row keeps a cursor (the last Telegram id handled, ascending), written after each
send, so a restart continues where it stopped and sends at most one message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from loguru import logger

from flick.i18n import t
from flick.models.db import pool
from flick.ports import Outbox, RecipientGone, RecipientUnreachable


class Broadcaster:
    def __init__(
        self,
        outbox: Outbox,
        rate: float,
        lang_of_admin: str = "en",
        on_gone: Callable[[int], None] = lambda user_id: None,
    ) -> None:
        # A recipient who blocked the bot is reported, not written here: every write about a
        # user goes through that user's actor (the engine passes a message to it).
        self.on_gone = on_gone
        self.outbox = outbox
        self.interval = 1.0 / rate
        self.lang = lang_of_admin
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def create(self, admin_id: int, text: str) -> int:
        bid: int = await pool().fetchval(
            "INSERT INTO broadcasts (admin_id, text, status, cursor, total, sent, failed, "
            "created_at) VALUES ($1, $2, 'running', 0, "
            "(SELECT count(*) FROM users WHERE NOT blocked), 0, 0, now()) RETURNING id",
            admin_id,
            text,
        )
        self.launch(bid)
        return bid

    def launch(self, bid: int) -> None:
        if bid not in self._tasks:
            task = asyncio.create_task(self._run(bid), name=f"broadcast-{bid}")
            self._tasks[bid] = task
            task.add_done_callback(lambda _: self._tasks.pop(bid, None))

    async def resume_all(self) -> int:
        rows = await pool().fetch("SELECT id FROM broadcasts WHERE status = 'running'")
        for row in rows:
            self.launch(row["id"])
        return len(rows)

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, bid: int) -> None:
        row = await pool().fetchrow("SELECT * FROM broadcasts WHERE id = $1", bid)
        if row is None:
            return
        admin, text, cursor = row["admin_id"], row["text"], row["cursor"]
        sent, failed, progress = row["sent"], row["failed"], row["progress_message_id"]
        while True:
            batch = await pool().fetch(
                "SELECT telegram_id FROM users WHERE telegram_id > $1 AND NOT blocked "
                "ORDER BY telegram_id LIMIT 200",
                cursor,
            )
            if not batch:
                break
            for user in batch:
                uid = user["telegram_id"]
                try:
                    await self.outbox.send_text(uid, text)
                    sent += 1
                except RecipientGone:
                    failed += 1
                    self.on_gone(uid)
                except Exception as exc:  # noqa: BLE001 - one bad recipient must not stop it
                    failed += 1
                    logger.bind(user_id=uid).warning("broadcast {} to user failed: {}", bid, exc)
                cursor = uid
                await pool().execute(
                    "UPDATE broadcasts SET cursor = $2, sent = $3, failed = $4 WHERE id = $1",
                    bid,
                    cursor,
                    sent,
                    failed,
                )
                await asyncio.sleep(self.interval)
            progress = await self._report(
                bid, admin, progress, "broadcast_progress", sent, failed, row["total"]
            )
        await pool().execute(
            "UPDATE broadcasts SET status = 'done', finished_at = now() WHERE id = $1", bid
        )
        await self._report(bid, admin, None, "broadcast_done", sent, failed, row["total"])
        logger.info("broadcast {} done: {} sent, {} failed", bid, sent, failed)

    async def _report(
        self,
        bid: int,
        admin: int,
        message_id: int | None,
        key: str,
        sent: int,
        failed: int,
        total: int,
    ) -> int | None:
        text = t(self.lang, key, id=bid, sent=sent, failed=failed, total=total)
        with contextlib.suppress(RecipientGone, RecipientUnreachable):
            if message_id is None:
                message_id = await self.outbox.send_text(admin, text)
                await pool().execute(
                    "UPDATE broadcasts SET progress_message_id = $2 WHERE id = $1", bid, message_id
                )
            else:
                await self.outbox.edit_text(admin, message_id, text)
        return message_id
