"""Promo codes from the user's side: `/promo CODE` and the deep link `?start=promo_CODE`.

A code counts once per user and never beyond its uses (`flick.models.money.redeem_promo`);
whatever is wrong with one is said in plain words. The operator's commands are in `admin`.
"""

from __future__ import annotations

from flick import events as ev
from flick.actors.handlers.generations import continue_after_top_up
from flick.actors.scope import Scope
from flick.models import money
from flick.payments.promos import normalize_code

PREFIX = "promo_"


async def cmd_promo(actor: Scope, e: ev.Command) -> None:
    if not e.args.strip():
        await actor.say("promo_usage")
        return
    await redeem(actor, e.args, e.event_id)


async def redeem(actor: Scope, typed: str, request_key: str) -> None:
    code = normalize_code(typed)
    if code is None:
        await actor.say("promo_unknown", code=_shown(typed))
        return
    result = await money.redeem_promo(actor.uid, code, request_key)
    actor.log.info("promo code {}: {}", code, result.status)
    if result.status != "ok":
        await actor.say(f"promo_{result.status}", code=code)
        return
    assert result.balance is not None
    actor.conv.balance = result.balance
    actor.ctx.on_metric("credits_granted", {"reason": "promo"}, result.credits)
    await actor.say("promo_ok", code=code, n=result.credits, balance=result.balance)
    await continue_after_top_up(actor)


def _shown(typed: str) -> str:
    """What the user typed, short and on one line, to say which code was not found."""
    line = " ".join(typed.split())
    return line if len(line) <= 32 else line[:31] + "…"
