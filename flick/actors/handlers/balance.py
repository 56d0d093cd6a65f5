"""Money that reaches a user from elsewhere: an operator's grant; the reports an operator gets
back; a send that found the user gone. Each one is a message to this user's actor."""

from __future__ import annotations

from flick.actors import messages as msg
from flick.actors.handlers.generations import continue_after_top_up
from flick.actors.scope import Scope
from flick.models import money


async def on_grant(actor: Scope, m: msg.Grant) -> None:
    granted = await money.grant(actor.uid, m.credits, m.note)
    actor.conv.balance = granted.balance
    actor.log.info("admin {} granted {} credit(s): {}", m.admin_id, granted.applied, m.note)
    # Reported as applied: a correction never takes a balance below zero.
    actor.post(
        m.admin_id,
        msg.AdminReport(
            "admin_granted",
            (("n", granted.applied), ("id", actor.uid), ("balance", granted.balance)),
        ),
    )
    if granted.applied > 0:
        await actor.say("granted", n=granted.applied, balance=granted.balance)
        await continue_after_top_up(actor)


async def on_admin_report(actor: Scope, m: msg.AdminReport) -> None:
    await actor.say(m.key, None, **dict(m.values))


async def on_recipient_blocked(actor: Scope, m: msg.RecipientBlocked) -> None:
    await actor.mark_blocked()
