"""Why Telegram would not let the bot in, in one line that says what to do.

Three causes are easy to mistake for "the network": a kurigram too old for what Telegram now
sends (a protocol layer mismatch), a bot token revoked in @BotFather, and a wrong or banned
API_ID/API_HASH. None of these lines ever holds the token or the hash.

A layer mismatch does not reach the caller as an exception: kurigram's session meets a
constructor id it has no class for (`mtproto.unpack` raises `ValueError("The server sent an
unknown constructor: 0x…")`), logs it, drops the packet and restarts the session, and the
request it was waiting for simply times out. So `ProtocolWatch` listens to that log record of
kurigram's session logger and remembers the constructor; `connect` asks it when a start fails.
The DH handshake reads with `TLObject.read`, where an unknown id is a `KeyError` carrying it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyrogram
from loguru import logger
from pyrogram.raw.all import layer

from flick.errors import ServiceError

_UNKNOWN: Final = re.compile(r"unknown constructor: (0x[0-9a-fA-F]+)")
_SESSION_LOGGER: Final = "pyrogram.session.session"
KURIGRAM: Final = f"kurigram {pyrogram.__version__} (layer {layer})"
_UPGRADE: Final = (
    "upgrade kurigram (`pip install -U kurigram`, or a newer Flick release); "
    "this is not a network problem"
)
_BOTFATHER: Final = "copy the bot's current token from @BotFather (/mybots → API Token)"
_MY_TELEGRAM: Final = "https://my.telegram.org → API development tools"


@dataclass(frozen=True)
class Explained:
    """One line for the operator: what is wrong, and which setting it concerns."""

    problem: str
    fix: str
    setting: str

    def error(self) -> ServiceError:
        return ServiceError(f"{self.problem} — {self.fix}", setting=self.setting)


class ProtocolWatch(logging.Handler):
    """Counts the packets kurigram could not read because of an unknown constructor."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.count = 0
        self.constructor: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        found = _unknown_constructor(record)
        if found is None:
            return
        self.count += 1
        if found != self.constructor:  # once per constructor, not once per dropped packet
            logger.error(
                "Telegram sent a constructor ({}) that {} cannot read; the packet was dropped — {}",
                found,
                KURIGRAM,
                _UPGRADE,
            )
        self.constructor = found


def _unknown_constructor(record: logging.LogRecord) -> str | None:
    # kurigram logs the ValueError itself (`log.debug(e)`) and then, at INFO, "Restarting
    # session due to - %s - %s" with the error as an argument: count the second one only.
    if not isinstance(record.args, tuple) or not any(
        isinstance(arg, ValueError) for arg in record.args
    ):
        return None
    match = _UNKNOWN.search(record.getMessage())
    return match.group(1).lower() if match else None


PROTOCOL: Final = ProtocolWatch()


@contextmanager
def watching_protocol() -> Iterator[ProtocolWatch]:
    """Listen to kurigram's session logger while a client starts. Its INFO records are let
    through for that time only (then its own level is back, so a DEBUG set later still shows);
    the root logger's handlers keep their own, higher level. The handler stays: where kurigram's
    INFO is logged anyway (LOG_LEVEL=INFO or DEBUG), a mismatch later on is logged as an error."""
    target = logging.getLogger(_SESSION_LOGGER)
    if PROTOCOL not in target.handlers:
        target.addHandler(PROTOCOL)
    level = target.level
    if target.getEffectiveLevel() > logging.INFO:
        target.setLevel(logging.INFO)
    try:
        yield PROTOCOL
    finally:
        target.setLevel(level)


def protocol_mismatch(constructor: str | None) -> Explained:
    seen = f" (unknown constructor {constructor})" if constructor else ""
    return Explained(
        f"Telegram speaks a newer protocol than {KURIGRAM} can read{seen}",
        _UPGRADE,
        "the kurigram version",
    )


def key_error_constructor(exc: BaseException) -> str | None:
    """The constructor id of kurigram's `TLObject.read` failing on an id it has no class for."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], int) and exc.args[0]:
        return hex(exc.args[0])
    return None


def explain_refusal(code: str, session_file: Path | None) -> Explained | None:
    """Telegram's refusal of the bot's login (an RPC error id), or None when not one of ours."""
    if code == "ACCESS_TOKEN_INVALID":
        return Explained(
            "Telegram refused the bot token (ACCESS_TOKEN_INVALID): it is mistyped or was revoked",
            _BOTFATHER,
            "BOT_TOKEN",
        )
    if code == "ACCESS_TOKEN_EXPIRED":
        return Explained(
            "Telegram says the bot token was revoked (ACCESS_TOKEN_EXPIRED)",
            "set BOT_TOKEN to the new token from @BotFather (/mybots → API Token)",
            "BOT_TOKEN",
        )
    if code in ("AUTH_KEY_UNREGISTERED", "SESSION_REVOKED", "SESSION_EXPIRED"):
        where = f"delete {session_file} and " if session_file is not None else ""
        return Explained(
            f"Telegram logged the bot's saved session out ({code}), as it does when the bot "
            "token is revoked",
            f"{where}set BOT_TOKEN to the current token from @BotFather",
            "BOT_TOKEN",
        )
    if code == "API_ID_INVALID":
        return Explained(
            "Telegram does not know this API_ID/API_HASH pair (API_ID_INVALID)",
            f"copy both from {_MY_TELEGRAM}",
            "API_ID and API_HASH",
        )
    if code == "API_ID_PUBLISHED_FLOOD":
        return Explained(
            "Telegram refuses this API_ID because it was published (API_ID_PUBLISHED_FLOOD)",
            f"create your own app at {_MY_TELEGRAM} and set API_ID and API_HASH",
            "API_ID and API_HASH",
        )
    return None
