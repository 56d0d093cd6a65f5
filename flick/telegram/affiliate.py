"""Telegram's affiliate program for the bot (`bots.updateStarRefProgram`), set by its owner.

Affiliates (any Telegram user or channel) join the program in their own app, share their link
to the bot, and Telegram pays them `permille`/1000 of the Stars the users they brought spend in
the bot, for `months` months (None: for as long as the program runs). Telegram lets only a
user, the bot's owner, change the program, not the bot itself: these calls run on a client
signed in as the owner (`flick.telegram.client.build_owner_client`). See docs/pricing.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import pyrogram
from pyrogram import Client
from pyrogram.errors.rpc_error import RPCError

from flick.telegram.outbox import error_id

# The generated `raw` package's `import *` re-exports are invisible to strict mypy.
_raw: Any = pyrogram.raw

#: What Telegram's refusals mean, in the operator's words.
REASONS: Final = {
    "BOT_METHOD_INVALID": "Telegram lets only the bot's owner change it, not the bot: sign in "
    "with your own account",
    "USER_BOT_REQUIRED": "that is not a bot",
    "BOT_INVALID": "this account does not own that bot",
    "STARREF_AWAITING_END": "the last program ended less than 24 hours ago: try again later",
    "STARREF_PERMILLE_INVALID": "the commission is outside Telegram's limits",
    "STARREF_PERMILLE_TOO_LOW": "a running program's commission can only be raised: end it, "
    "wait 24 hours, and start a new one",
    "STARREF_MONTHS_TOO_LOW": "a running program's duration can only be raised: end it, wait "
    "24 hours, and start a new one",
}


class AffiliateError(Exception):
    """Telegram refused; the message says why in plain words."""


@dataclass(frozen=True, slots=True)
class AffiliateProgram:
    permille: int
    months: int | None  # None: no end
    ends: datetime | None  # set once the program was ended

    def describe(self) -> str:
        share = f"{self.permille / 10:g}% of what referred users spend"
        length = f"for {self.months} month(s) after they join" if self.months else "with no end"
        ending = f"; it ends {self.ends:%Y-%m-%d %H:%M} UTC" if self.ends else ""
        return f"affiliates earn {share}, {length}{ending}"


def _program(raw_program: Any) -> AffiliateProgram:
    end = raw_program.end_date
    return AffiliateProgram(
        permille=int(raw_program.commission_permille),
        months=raw_program.duration_months or None,
        ends=datetime.fromtimestamp(end, UTC) if end else None,
    )


async def _bot(client: Client, bot: str) -> Any:
    peer: Any = await client.resolve_peer(bot)
    return _raw.types.InputUser(user_id=peer.user_id, access_hash=peer.access_hash)


def _refused(exc: RPCError) -> AffiliateError:
    code = error_id(exc) or type(exc).__name__
    return AffiliateError(f"Telegram refused ({code}): {REASONS.get(code, 'see its message')}")


async def current_program(client: Client, bot: str) -> AffiliateProgram | None:
    """The bot's program as Telegram shows it (None: there is none)."""
    try:
        full = await client.invoke(_raw.functions.users.GetFullUser(id=await _bot(client, bot)))
    except RPCError as exc:
        raise _refused(exc) from exc
    program = full.full_user.starref_program
    return _program(program) if program is not None else None


async def set_program(
    client: Client, bot: str, permille: int, months: int | None = None
) -> AffiliateProgram:
    """Start or raise the program (`permille` 1-1000), or end it (`permille` 0)."""
    if not 0 <= permille <= 1000 or (months is not None and months <= 0):
        raise AffiliateError("the commission is per mille (0-1000) and the months positive")
    try:
        result = await client.invoke(
            _raw.functions.bots.UpdateStarRefProgram(
                bot=await _bot(client, bot), commission_permille=permille, duration_months=months
            )
        )
    except RPCError as exc:
        raise _refused(exc) from exc
    return _program(result)
