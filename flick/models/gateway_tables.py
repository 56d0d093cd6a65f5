"""The bot's Telegram session in PostgreSQL (SESSION_STORE=database), where a standby gateway can
read it: kurigram's session, its known peers and usernames, and its update state.

Rows are keyed by the session's name (per bot, `flick.telegram.client.session_name`), so one
database can hold a new bot's session beside an old one. The unique keys on (session, id) are
in the migration: Piccolo's columns cannot say them.
"""

from __future__ import annotations

from piccolo.columns import BigInt, BigSerial, Boolean, Bytea, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class TelegramSession(Table, tablename="telegram_sessions"):
    name = Varchar(length=64, primary_key=True)
    dc_id = Integer(default=2)
    server_address = Text(null=True, default=None)
    port = Integer(null=True, default=None)
    api_id = Integer(null=True, default=None)
    test_mode = Boolean(null=True, default=None)
    # Sealed with a key derived from BOT_TOKEN (flick/telegram/session_seal.py): a database dump
    # alone does not let anyone act as the bot.
    auth_key = Bytea(null=True, default=None)
    date = BigInt(default=0)
    user_id = BigInt(null=True, default=None)
    is_bot = Boolean(null=True, default=None)
    version = Integer(default=7)  # kurigram's session schema version, for its own checks


class TelegramPeer(Table, tablename="telegram_peers"):
    id = BigSerial(primary_key=True)
    session = Varchar(length=64)
    peer_id = BigInt()
    access_hash = BigInt(null=True, default=None)
    type = Varchar(length=16)
    phone_number = Varchar(length=32, null=True, default=None)
    last_update_on = Timestamptz(default=TimestamptzNow())


class TelegramUsername(Table, tablename="telegram_usernames"):
    id = BigSerial(primary_key=True)
    session = Varchar(length=64)
    peer_id = BigInt()
    username = Varchar(length=64)


class TelegramUpdateState(Table, tablename="telegram_update_states"):
    """pts/qts/date/seq per channel (id 0: the bot's own updates)."""

    id = BigSerial(primary_key=True)
    session = Varchar(length=64)
    state_id = BigInt()
    pts = BigInt(null=True, default=None)
    qts = BigInt(null=True, default=None)
    date = BigInt(null=True, default=None)
    seq = BigInt(null=True, default=None)


GATEWAY_TABLES: tuple[type[Table], ...] = (
    TelegramSession,
    TelegramPeer,
    TelegramUsername,
    TelegramUpdateState,
)
