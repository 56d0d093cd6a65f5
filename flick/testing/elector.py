"""A gateway's election as a real process, for the tests that SIGKILL the active gateway.

    python -m flick.testing.elector DATABASE_URL SESSION

It elects (flick.telegram.leadership) with the lock key of SESSION and prints the election's log
lines ("standby, waiting for the active gateway", "this process is the active gateway", "lost
the gateway lock …"). Once active it plays a gateway's use of the session in the database
(flick.telegram.session_store), through the lock connection as `flick run` does:

  resumed <pts>   the update state it found (the last one a gateway saved; 0 if none)
  saved <pts>     it saved pts + 100, then took pts + 150 without saving (updates received but
                  not yet handed over: the next gateway must ask Telegram for them again)

and then waits for a kill. Schema migrations must have run on the database.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from loguru import logger
from pyrogram.storage import UpdateState

from flick.telegram.leadership import Leadership, lock_key
from flick.telegram.session_seal import Seal
from flick.telegram.session_store import DatabaseSessionStorage

TOKEN = "123456:elector-test-token"


async def main(url: str, session: str) -> None:
    async with Leadership(url, lock_key(session), retry=0.2) as lead:
        storage = DatabaseSessionStorage(session, lambda: lead, Seal(TOKEN, session))
        await storage.open()
        states = await storage.get_update_states(0)
        pts = states[0].pts or 0 if states else 0
        print(f"resumed {pts}", flush=True)
        await storage.set_update_state(UpdateState(0, pts + 100, 1, 1_700_000_000, 1))
        await storage.save()
        await storage.set_update_state(UpdateState(0, pts + 150, None, None, None))
        print(f"saved {pts + 100}", flush=True)
        await lead.lost.wait()


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stdout, format="{message}", level="INFO")
    asyncio.run(main(sys.argv[1], sys.argv[2]))


async def lock_holders(url: str, key: int) -> list[int]:
    """Backends holding the advisory lock `key` (a bigint key: classid high, objid low word)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1",
            key,
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]
