"""The offline Telegram: kurigram's real Client whose other end is a fake Telegram in memory.

Tests import what they need from here (`OfflineTelegram`, `raw`, `errors`, ...), never `pyrogram`.
The pieces: `offline_telegram` (the client and its pushing/reading helpers), `builders` (raw
MTProto updates), `server` (Telegram's answers), `wire` (the session in place of the network),
`file_store`, `media`, `stars_ledger`, `star_subscriptions` and `affiliate_programs` (what the
server keeps). See docs/testing.md.
"""

from flick.testing.telegram.offline_telegram import (
    BOT_ID,
    Exchange,
    Incoming,
    OfflineTelegram,
    SentMedia,
    errors,
    raw,
    seed_session,
)

__all__ = [
    "BOT_ID",
    "Exchange",
    "Incoming",
    "OfflineTelegram",
    "SentMedia",
    "errors",
    "raw",
    "seed_session",
]
