"""Admin commands, for the Telegram ids in ADMIN_IDS. Anyone else gets "unknown command".

Whatever changes a user's money is a message to that user's actor (so its in-memory balance
stays exact), which reports back what it actually did; an ambiguous target is refused.
"""

from __future__ import annotations

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.scope import Scope
from flick.errors import TelegramRefused
from flick.models import orders
from flick.models import stats as figures
from flick.ports import RecipientGone, RecipientUnreachable
from flick.untrusted import parse_int

COMMANDS = frozenset({"stats", "user", "grant", "refund", "broadcast"})


async def handle(actor: Scope, e: ev.Command) -> None:
    if actor.uid not in actor.ctx.admin_ids:
        actor.log.warning("non-admin tried /{}", e.name)
        await actor.say("unknown_command")
        return
    await _HANDLERS[e.name](actor, e.args.strip())


async def stats(actor: Scope, args: str) -> None:
    asked = parse_int(args, max_digits=4)
    days = asked if asked is not None and 0 < asked <= 3650 else 30
    s = await figures.stats(days)
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


async def user(actor: Scope, args: str) -> None:
    uid = await _target(actor, args)
    if uid is None:
        return
    card = await figures.user_card(uid)
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


async def _target(actor: Scope, ref: str) -> int | None:
    """The one user `ref` (an id or @username) names; None after telling the admin why not."""
    found = await figures.find_users(ref)
    if len(found) == 1:
        return found[0]
    if found:
        await actor.say("admin_ambiguous", ref=ref, ids=", ".join(map(str, found)))
    else:
        await actor.say("admin_no_user", ref=ref or "?")
    return None


async def grant(actor: Scope, args: str) -> None:
    parts = args.split(maxsplit=2)
    amount = parse_int(parts[1], max_digits=6, signed=True) if len(parts) == 3 else None
    if amount is None or abs(amount) > 100_000 or amount == 0:
        await actor.say("admin_grant_usage")
        return
    uid = await _target(actor, parts[0])
    if uid is None:
        return
    note = f"by admin {actor.uid}: {parts[2]}"
    # The target's actor applies it and reports back what it applied (admin_granted).
    actor.post(uid, msg.Grant(amount, note, actor.uid))


async def refund(actor: Scope, args: str) -> None:
    charge = args.strip()
    uid = await orders.payment_owner(charge) if charge else None
    if uid is None:
        await actor.say("admin_no_payment", charge=charge or "?")
        return
    try:
        # Telegram's CHARGE_ALREADY_REFUNDED counts as done: recorded all the same.
        await actor.ctx.outbox.refund_star_payment(uid, charge)
    except (TelegramRefused, RecipientGone, RecipientUnreachable) as exc:
        actor.log.warning("Telegram refused refunding {}: {}", charge, exc)
        await actor.say("admin_refund_refused", charge=charge, reason=str(exc))
        return
    actor.post(uid, msg.RefundPurchase(charge, actor.uid))


async def broadcast(actor: Scope, args: str) -> None:
    if not args or actor.ctx.broadcaster is None:
        await actor.say("admin_broadcast_usage")
        return
    bid = await actor.ctx.broadcaster.create(actor.uid, args)
    await actor.say("admin_broadcast_started", id=bid)


_HANDLERS = {"stats": stats, "user": user, "grant": grant, "refund": refund, "broadcast": broadcast}

__all__ = ["COMMANDS", "handle"]
