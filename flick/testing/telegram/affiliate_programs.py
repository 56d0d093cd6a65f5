"""The bot's affiliate program on the offline Telegram (`bots.updateStarRefProgram`).

Telegram lets only users change a bot's program: the request from a bot's session is refused
(BOT_METHOD_INVALID). A test plays the owner by setting `tg.server.session_is_bot = False`.
Commissions are within Telegram's limits (1-900 ‰); a running program can only be raised; a
program ended (commission 0) can be replaced 24 hours later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flick.testing.telegram.wire import raw, rpc_error

MIN_PERMILLE, MAX_PERMILLE = 1, 900
END_DELAY = 24 * 3600


@dataclass
class Program:
    permille: int
    months: int | None
    end_date: int | None = None

    def raw(self, bot_id: int) -> Any:
        return raw.types.StarRefProgram(
            bot_id=bot_id,
            commission_permille=self.permille,
            duration_months=self.months,
            end_date=self.end_date,
        )


class AffiliatePrograms:
    def __init__(self, bot: Any) -> None:
        self.bot = bot
        self.program: Program | None = None

    def update(self, request: Any, session_is_bot: bool) -> Any:
        if session_is_bot:
            raise rpc_error(request, "BOT_METHOD_INVALID")
        if getattr(request.bot, "user_id", None) != self.bot.id:
            raise rpc_error(request, "BOT_INVALID")
        permille, months, now = request.commission_permille, request.duration_months, time.time()
        current = self.program
        if permille == 0:
            if current is not None and current.end_date is None:
                current.end_date = int(now) + END_DELAY
            return (current or Program(0, None, int(now))).raw(self.bot.id)
        if not MIN_PERMILLE <= permille <= MAX_PERMILLE:
            raise rpc_error(request, "STARREF_PERMILLE_INVALID")
        if current is not None and current.end_date is not None:
            if current.end_date > now:
                raise rpc_error(request, "STARREF_AWAITING_END")
            current = None
        if current is not None:
            if permille < current.permille:
                raise rpc_error(request, "STARREF_PERMILLE_TOO_LOW")
            if (current.months is None and months is not None) or (
                months is not None and current.months is not None and months < current.months
            ):
                raise rpc_error(request, "STARREF_MONTHS_TOO_LOW")
        self.program = Program(permille, months)
        return self.program.raw(self.bot.id)

    def full_user(self, request: Any, users: dict[int, Any], me: int | None = None) -> Any:
        """users.getFullUser: the bot's profile carries its program. `me`: who inputUserSelf is
        (kurigram's get_me asks so)."""
        self_ = isinstance(request.id, raw.types.InputUserSelf)
        user_id = me if self_ else getattr(request.id, "user_id", None)
        user = users.get(user_id) if user_id is not None else None
        if user is None:
            raise rpc_error(request, "USER_ID_INVALID")
        program = self.program if user_id == self.bot.id else None
        full = raw.types.UserFull(
            id=user.id,
            settings=raw.types.PeerSettings(),
            notify_settings=raw.types.PeerNotifySettings(),
            common_chats_count=0,
            starref_program=program.raw(self.bot.id) if program else None,
        )
        return raw.types.users.UserFull(full_user=full, chats=[], users=[user])
