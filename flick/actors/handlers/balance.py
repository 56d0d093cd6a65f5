"""Money from elsewhere: an operator's grant, or a balance another path already changed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flick.actors import messages as msg
from flick.actors.handlers.generations import continue_after_top_up
from flick.models import ledger

if TYPE_CHECKING:
    from flick.actors.user import UserActor


async def on_grant(actor: UserActor, m: msg.Grant) -> None:
    actor.conv.balance = await ledger.grant(actor.uid, m.credits, m.note)
    if m.credits > 0:
        await actor.say("granted", credits=m.credits, balance=actor.conv.balance)
        await continue_after_top_up(actor)


async def on_balance_changed(actor: UserActor, m: msg.BalanceChanged) -> None:
    actor.conv.balance = m.balance
    if m.notice:
        await actor.say(m.notice, balance=m.balance)
