"""What a database statement and a keyboard reply cost Flick's process in CPU (Round 7, #19).

    .venv/bin/python -m bench.round_trips      # ~30 s

1. One statement (`SELECT $1`) through an asyncpg pool of 10 from 10 tasks: with asyncpg's
   default release (its reset query, a second round trip) and with Flick's (flick/models/db.py).
2. One message with an inline keyboard on the offline Telegram: kurigram's `send_message` (which
   parses Telegram's answer into a Message) and Flick's `flick.telegram.sent.send_text`.

Each pair alternates four times (the machine is shared); CPU is the process's, per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import asyncpg
from pyrogram import types

from bench.common import MACHINE_POSTGRES
from flick.models.db import keep_session
from flick.telegram import sent
from flick.testing.services import TEST_DATABASE_ENV
from flick.testing.telegram import OfflineTelegram

ROUNDS = 4
STATEMENTS = 4000
MESSAGES = 2000


async def _statement_cpu(url: str, *, flicks: bool) -> tuple[float, float]:
    """(µs of CPU per statement, statements/s)."""
    extra = {"reset": keep_session} if flicks else {}
    pool = await asyncpg.create_pool(url, min_size=10, max_size=10, **extra)
    try:

        async def worker(n: int) -> None:
            for i in range(n):
                await pool.fetchval("SELECT $1::int", i)

        await asyncio.gather(*(worker(50) for _ in range(10)))  # connections and statements warm
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(STATEMENTS // 10) for _ in range(10)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await pool.close()
    return cpu / STATEMENTS * 1e6, STATEMENTS / wall


async def statements(url: str) -> None:
    print("-- one statement through a pool of 10, 10 tasks (µs CPU per statement, statements/s)")
    for i in range(ROUNDS):
        for label, flicks in (("asyncpg's reset", False), ("Flick's release", True)):
            cpu, rate = await _statement_cpu(url, flicks=flicks)
            print(f"  round {i + 1}: {label:<16} {cpu:7.1f} µs {rate:8,.0f}/s")


async def replies() -> None:
    print("-- one keyboard message on the offline Telegram (µs CPU per message, both sides)")
    async with OfflineTelegram() as tg:
        users = [tg.user(5000 + i).id for i in range(200)]
        buttons = [
            types.InlineKeyboardButton("Hug", callback_data="style:hug"),
            types.InlineKeyboardButton("Kiss", callback_data="style:kiss"),
        ]
        markup = types.InlineKeyboardMarkup([buttons])
        no_preview = types.LinkPreviewOptions(is_disabled=True)

        async def kurigram(uid: int) -> None:
            await tg.client.send_message(
                uid, "Pick a style", reply_markup=markup, link_preview_options=no_preview
            )

        async def flick(uid: int) -> None:
            await sent.send_text(tg.client, uid, "Pick a style", markup)

        ways: tuple[tuple[str, Callable[[int], Awaitable[None]]], ...] = (
            ("send_message", kurigram),
            ("sent.send_text", flick),
        )
        for _, way in ways:  # the peers known, both paths warm
            await asyncio.gather(*(way(uid) for uid in users))
        for i in range(ROUNDS):
            for label, way in ways:
                cpu = time.process_time()
                for _ in range(MESSAGES // len(users)):
                    await asyncio.gather(*(way(uid) for uid in users))
                cpu = time.process_time() - cpu
                print(f"  round {i + 1}: {label:<16} {cpu / MESSAGES * 1e6:7.1f} µs")


async def main(url: str) -> None:
    await statements(url)
    await replies()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.round_trips", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(TEST_DATABASE_ENV, MACHINE_POSTGRES),
        help="a PostgreSQL server (the statement reads no table)",
    )
    asyncio.run(main(parser.parse_args().database_url))
