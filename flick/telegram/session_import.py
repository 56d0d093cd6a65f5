"""The bot's session file, copied into the database the first time SESSION_STORE=database meets
an empty session: switching stores keeps the auth key (no new sign-in), the known peers and,
above all, the update state, so the updates sent while Flick restarted are still fetched.

Read-only, once: the file stays where it is (0600, in DATA_DIR) and is not read again.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from loguru import logger

from flick.telegram.session_seal import Seal
from flick.telegram.session_store import Executor


def _read(path: Path) -> tuple[Any, list[Any], list[Any], list[Any]] | None:
    # Blocking, like kurigram's own sqlite3 calls: once, at start.
    if not path.is_file():
        return None
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        session = conn.execute(
            "SELECT dc_id, server_address, port, api_id, test_mode, auth_key, date, user_id, "
            "is_bot FROM sessions"
        ).fetchone()
        if session is None:
            return None
        states = conn.execute("SELECT id, pts, qts, date, seq FROM update_state").fetchall()
        peers = conn.execute("SELECT id, access_hash, type, phone_number FROM peers").fetchall()
        names = conn.execute("SELECT id, username FROM usernames").fetchall()
    return session, states, peers, names


async def import_file_session(path: Path, name: str, db: Executor, seal: Seal) -> bool:
    """Copy the session file at `path` into the (empty) session `name`; whether it did."""
    try:
        found = _read(path)
    except sqlite3.Error as exc:  # an old or damaged file: sign in afresh, as without one
        logger.warning("the Telegram session file {} was not imported: {}", path.name, exc)
        return False
    if found is None:
        return False
    (dc, address, port, api_id, test_mode, key, date, user_id, is_bot), states, peers, names = found
    await db.execute(
        "UPDATE telegram_sessions SET dc_id = $2, server_address = $3, port = $4, api_id = $5, "
        "test_mode = $6, auth_key = $7, date = $8, user_id = $9, is_bot = $10 WHERE name = $1",
        name,
        dc,
        address,
        port,
        api_id,
        None if test_mode is None else bool(test_mode),
        None if key is None else seal.seal(bytes(key)),
        date or 0,
        user_id,
        None if is_bot is None else bool(is_bot),
    )
    if states:
        await db.executemany(
            "INSERT INTO telegram_update_states (session, state_id, pts, qts, date, seq) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session, state_id) DO NOTHING",
            [(name, *state) for state in states],
        )
    if peers:
        await db.executemany(
            "INSERT INTO telegram_peers (session, peer_id, access_hash, type, phone_number) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session, peer_id) DO NOTHING",
            [(name, *peer) for peer in peers],
        )
    if names:
        await db.executemany(
            "INSERT INTO telegram_usernames (session, peer_id, username) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            [(name, *row) for row in names],
        )
    logger.info(
        "imported the Telegram session file {} into the database ({} update state(s), {} peer(s))",
        path.name,
        len(states),
        len(peers),
    )
    return True
