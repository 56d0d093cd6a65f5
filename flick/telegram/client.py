"""Build the kurigram client from Settings."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from pyrogram import Client, enums
from pyrogram.errors.rpc_error import RPCError
from pyrogram.raw.functions.auth.log_out import LogOut
from pyrogram.storage import SQLiteStorage, Storage

from flick.errors import ConfigError
from flick.models.db import pool
from flick.private_files import private_dir
from flick.settings import HINTS, Settings
from flick.telegram.guest_session import GuestSession
from flick.telegram.session_file import BorrowedSessionFile, PrivateSessionStorage
from flick.telegram.session_import import import_file_session
from flick.telegram.session_seal import Seal
from flick.telegram.session_store import DatabaseSessionStorage, Executor

#: Options shared by the production client and the offline one in `flick.testing.telegram`, so
#: tests parse updates exactly as production does.
CLIENT_OPTIONS: Final[dict[str, Any]] = {
    # One handler worker: kurigram's workers take updates from one queue concurrently, so with
    # more than one a user's "/create" and the photo right after it could reach the engine in
    # the wrong order. The adapter only parses and hands over to a mailbox, so one is plenty.
    "workers": 1,
    # We send plain text: "*" or "<b>" in a user's name must not become formatting.
    "parse_mode": enums.ParseMode.DISABLED,
    # FloodWait goes to the outbox, which delays only the chat concerned; kurigram's own sleep
    # would hold whichever task happened to send.
    "sleep_threshold": 0,
    # Each of these costs an extra request per update (a reply's original, a sticker's set
    # name, …) and the engine uses none of them.
    "fetch_replies": False,
    "fetch_topics": False,
    "fetch_stories": False,
    "fetch_stickers": False,
    # Photo downloads and video uploads share this; with the default of 1 a 200 MB upload
    # would hold every user's photo download behind it.
    "max_concurrent_transmissions": 3,
}


def session_name(bot_token: str) -> str:
    """The session file's name: per bot, so a new token never reuses another bot's session.

    The part before ":" is the bot's public user id, not a secret.
    """
    bot_id = bot_token.partition(":")[0]
    return f"flick-bot-{bot_id}" if bot_id.isdigit() else "flick-bot"


class _Redact(logging.Filter):
    """Blanks secrets out of kurigram's log records.

    At DEBUG its session logs every MTProto message it sends, the bot's login included
    (`auth.importBotAuthorization` carries the token and the api_hash).
    """

    def __init__(self) -> None:
        super().__init__("flick-redact")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(secret in text for secret in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, "[redacted]")
            record.msg, record.args = text, None
        return True


_REDACT = _Redact()
# A logger's filters see only that logger's own records, so each one that can print a request.
_KURIGRAM_LOGGERS: Final = ("pyrogram.session.session", "pyrogram.session.auth", "pyrogram.client")


def redact_in_kurigram_logs(*secrets: str) -> None:
    _REDACT.secrets.update(s for s in secrets if s)
    for name in _KURIGRAM_LOGGERS:
        target = logging.getLogger(name)
        if _REDACT not in target.filters:
            target.addFilter(_REDACT)


def session_storage(
    settings: Settings, *, executor: Callable[[], Executor] | None = None, borrow: bool = False
) -> Storage:
    """The bot's session where SESSION_STORE keeps it: the one place a bot client gets it.

    "file": kurigram's SQLite file in `settings.data_dir`. "database": rows in PostgreSQL,
    written through `executor`, by default the pool (the elected gateway passes its lock
    connection, flick.telegram.leadership, so that it cannot write once it has lost the lock).
    `borrow`: for a one-off command (see `build_client`); a session not stored yet is not
    created, so the first gateway still finds none (and imports its file, if it has one).
    """
    settings.require_telegram()
    assert settings.bot_token is not None  # require_telegram
    token = settings.bot_token.get_secret_value()
    name = session_name(token)
    if settings.session_store == "file":
        workdir = private_dir(settings.data_dir)
        if not borrow:
            return PrivateSessionStorage(name, workdir=workdir)
        if (workdir / f"{name}{PrivateSessionStorage.FILE_EXTENSION}").is_file():
            return BorrowedSessionFile(name, workdir=workdir)
        return SQLiteStorage(name, workdir=workdir, in_memory=True)  # none made for a one-off
    seal = Seal(token, name)
    if borrow:
        return DatabaseSessionStorage(name, executor or pool, seal, create=False)
    # A session file from SESSION_STORE=file is carried over once (flick.telegram.session_import).
    legacy = Path(settings.data_dir) / f"{name}{PrivateSessionStorage.FILE_EXTENSION}"
    return DatabaseSessionStorage(
        name,
        executor or pool,
        seal,
        first_use=partial(import_file_session, legacy, name, seal=seal),
    )


def build_client(
    settings: Settings, session: Storage | None = None, *, one_off: bool = False
) -> Client:
    """A kurigram client for the bot, its session in `session` or `session_storage(settings)`.

    `one_off`: for a command that runs beside the gateway (`flick doctor`, `flick payments
    reconcile`). It borrows the stored session without writing it back (GuestSession: no new
    sign-in, the gateway's update state untouched) and asks Telegram for nothing to be pushed
    to it (`no_updates`: every request goes as invokeWithoutUpdates), so the bot's updates keep
    going to the gateway. Stop it with `stop_one_off`.
    """
    settings.require_telegram()
    assert settings.api_hash is not None and settings.bot_token is not None  # require_telegram
    token = settings.bot_token.get_secret_value()
    api_hash = settings.api_hash.get_secret_value()
    redact_in_kurigram_logs(token, api_hash)
    storage = session or session_storage(settings, borrow=one_off)
    return Client(
        session_name(token),
        api_id=settings.api_id,
        api_hash=api_hash,
        bot_token=token,
        workdir=private_dir(settings.data_dir),
        storage_engine=GuestSession(storage) if one_off else storage,
        no_updates=one_off,
        # A one-off fetches nothing at start either: what it fetched would reach no handler.
        # The gateway fetches what arrived while the bot was down (a restart, a deploy): a
        # user's photo or a successful payment must not be lost. The engine knows
        # redeliveries by event_id.
        skip_updates=one_off,
        **CLIENT_OPTIONS,
    )


async def stop_one_off(client: Client) -> None:
    """Stop a `build_client(one_off=True)` client. If it had to sign in (no session stored
    yet), that session is logged out at Telegram: one-off sessions do not pile up."""
    storage = client.storage
    if client.is_connected and isinstance(storage, GuestSession) and storage.signed_in:
        with contextlib.suppress(RPCError, OSError, TimeoutError):
            await client.invoke(LogOut())
    if client.is_connected:
        with contextlib.suppress(ConnectionError):
            await client.stop()


OWNER_SESSION = "flick-owner"


def build_owner_client(settings: Settings) -> Client:
    """A kurigram client signed in as the bot's owner (a person, not the bot), for what Telegram
    lets only users do (`flick affiliate`). The first start asks for the phone number and login
    code in the terminal; the session is kept in `settings.data_dir`, private to Flick's user."""
    missing = [name for name in ("api_id", "api_hash") if getattr(settings, name) is None]
    if missing:
        raise ConfigError([(name.upper(), "is not set", HINTS[name]) for name in missing])
    assert settings.api_hash is not None
    api_hash = settings.api_hash.get_secret_value()
    redact_in_kurigram_logs(api_hash)
    workdir = private_dir(settings.data_dir)
    return Client(
        OWNER_SESSION,
        api_id=settings.api_id,
        api_hash=api_hash,
        workdir=workdir,
        storage_engine=PrivateSessionStorage(OWNER_SESSION, workdir=workdir),
        no_updates=True,  # it only asks; it must not take the owner's updates
    )


__all__ = ["Client", "build_client", "build_owner_client", "session_storage", "stop_one_off"]
