"""Admin commands, for the Telegram ids in ADMIN_IDS. Anyone else gets "unknown command".

Balance changes go to the target user's actor (a message), never straight to the database, so
that actor's in-memory balance stays exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flick import events as ev
from flick.actors import messages as msg
from flick.admin import queries
from flick.i18n import t
from flick.models import ledger
from flick.untrusted import parse_int

if TYPE_CHECKING:
    from flick.actors.user import UserActor

COMMANDS = frozenset({"stats", "user", "grant", "refund", "broadcast"})


async def handle(actor: UserActor, e: ev.Command) -> None:
    if actor.uid not in actor.ctx.admin_ids:
        actor.log.warning("non-admin tried /{}", e.name)
        await actor.say("unknown_command")
        return
    await _HANDLERS[e.name](actor, e.args.strip())


async def stats(actor: UserActor, args: str) -> None:
    asked = parse_int(args, max_digits=4)
    days = asked if asked is not None and 0 < asked <= 3650 else 30
    s = await queries.stats(days)
    outcomes = ", ".join(f"{k}: {v}" for k, v in s["outcomes"].items()) or "—"
    income = s["stars"] * actor.ctx.settings.star_usd
    await actor.say(
        "admin_stats",
        days=days,
        users=s["users"],
        new_today=s["new_today"],
        new_period=s["new_period"],
        outcomes=outcomes,
        payments=s["payments"],
        stars=s["stars"],
        income=f"{income:.2f}",
        cost=f"{s['cost_usd']:.2f}",
        margin=f"{income - s['cost_usd']:.2f}",
    )


async def user(actor: UserActor, args: str) -> None:
    uid = await queries.find_user(args) if args else None
    if uid is None:
        await actor.say("admin_no_user", ref=args or "?")
        return
    card = await queries.user_card(uid)
    u = card["user"]
    payments = (
        "\n".join(
            f"  {p['created_at']:%Y-%m-%d} {p['stars_amount']}⭐ → {p['credits']} "
            f"({p['status']}) {p['telegram_payment_charge_id']}"
            for p in card["payments"]
        )
        or "  —"
    )
    gens = ", ".join(f"{k}: {v}" for k, v in card["generations"].items()) or "—"
    await actor.say(
        "admin_user",
        id=uid,
        username=u["username"] or "—",
        name=u["first_name"] or "—",
        balance=u["balance"],
        blocked=u["blocked"],
        created=f"{u['created_at']:%Y-%m-%d}",
        payments=payments,
        generations=gens,
    )


async def grant(actor: UserActor, args: str) -> None:
    parts = args.split(maxsplit=2)
    amount = parse_int(parts[1], max_digits=6, signed=True) if len(parts) == 3 else None
    if amount is None or abs(amount) > 100_000:
        await actor.say("admin_grant_usage")
        return
    uid = await queries.find_user(parts[0])
    if uid is None:
        await actor.say("admin_no_user", ref=parts[0])
        return
    credits, reason = amount, parts[2]
    note = f"by admin {actor.uid}: {reason}"
    if uid == actor.uid:
        await actor.on_grant(msg.Grant(credits, note))
    else:
        assert actor.ctx.services is not None
        actor.ctx.services.post(uid, msg.Grant(credits, note))
    actor.log.info("admin granted {} credit(s) to {}: {}", credits, uid, reason)
    await actor.say("admin_granted", credits=credits, id=uid)


async def refund(actor: UserActor, args: str) -> None:
    charge = args.strip()
    uid = await queries.payment_owner(charge) if charge else None
    if uid is None:
        await actor.say("admin_no_payment", charge=charge or "?")
        return
    fresh = await actor.ctx.outbox.refund_star_payment(uid, charge)
    # Telegram's CHARGE_ALREADY_REFUNDED is "done", not an error: record it all the same.
    result = await ledger.refund_payment(charge, note=f"refunded by admin {actor.uid}")
    if result is not None and actor.ctx.services is not None:
        if uid == actor.uid:
            actor.conv.balance = result.balance
        else:
            actor.ctx.services.post(uid, msg.BalanceChanged(result.balance, "admin_refund_notice"))
    await actor.say(
        "admin_refunded" if fresh or result else "admin_already_refunded",
        charge=charge,
        taken=result.taken if result else 0,
    )


async def broadcast(actor: UserActor, args: str) -> None:
    if not args or actor.ctx.broadcaster is None:
        await actor.say("admin_broadcast_usage")
        return
    bid = await actor.ctx.broadcaster.create(actor.uid, args)
    await actor.say("admin_broadcast_started", id=bid)


_HANDLERS = {"stats": stats, "user": user, "grant": grant, "refund": refund, "broadcast": broadcast}

__all__ = ["COMMANDS", "handle", "t"]
