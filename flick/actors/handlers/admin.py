"""Admin commands, for the Telegram ids in ADMIN_IDS. Anyone else gets "unknown command".

Whatever changes a user's money is a message to that user's actor (so its in-memory balance
stays exact), which reports back what it actually did; an ambiguous target is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.scope import Scope
from flick.errors import TelegramRefused
from flick.i18n import t
from flick.models import orders, promos, referrals, subscriptions
from flick.models import stats as figures
from flick.payments.promos import normalize_code
from flick.ports import RecipientGone, RecipientUnreachable
from flick.untrusted import parse_int

COMMANDS = frozenset({"stats", "user", "grant", "refund", "broadcast", "promos"})


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
    g = await figures.growth(days)
    outcomes = (
        ", ".join(f"{t(actor.lang, f'gen_status_{k}')}: {v}" for k, v in s["outcomes"].items())
        or "—"
    )
    star_usd = actor.ctx.settings.star_usd
    income = s["stars"] * star_usd
    growth = t(
        actor.lang,
        "admin_stats_growth",
        **g,
        package_usd=f"{g['package_stars'] * star_usd:.2f}",
        sub_usd=f"{g['sub_stars'] * star_usd:.2f}",
        sub_renewals=max(0, g["sub_payments"] - g["sub_new"]),
    )
    text = t(
        actor.lang,
        "admin_stats",
        n=days,
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
    await actor.send(f"{text}\n{growth}")


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
    text = t(
        actor.lang,
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
    await actor.send(f"{text}\n{await _growth_card(actor, uid)}")


async def _growth_card(actor: Scope, uid: int) -> str:
    sub = await subscriptions.current(uid)
    if sub is None:
        plan = "—"
    else:
        if not sub.active:
            state = t(actor.lang, "admin_plan_ended")
        elif sub.renews:
            state = t(actor.lang, "admin_plan_renews")
        else:
            state = t(actor.lang, "admin_plan_off", by=sub.canceled_by or "?")
        plan = t(
            actor.lang,
            "admin_plan",
            plan=sub.plan,
            n=sub.credits,
            stars=sub.stars,
            renewals=sub.renewals,
            state=state,
            date=f"{sub.period_end:%Y-%m-%d}",
        ) + (t(actor.lang, "admin_plan_failed") if sub.payment_failed else "")
    codes = ", ".join(f"{c} (+{n}, {when:%Y-%m-%d})" for c, n, when in await promos.of_user(uid))
    invites = await referrals.summary(uid)
    return t(
        actor.lang,
        "admin_user_growth",
        subscription=plan,
        codes=codes or "—",
        invited_by=invites.invited_by or "—",
        invited=invites.invited,
        counted=invites.counted,
        earned=invites.earned,
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


async def promo_codes(actor: Scope, args: str) -> None:
    """/promos: the latest codes; /promos new CODE CREDITS USES [DAYS]; /promos off CODE."""
    action, _, rest = args.partition(" ")
    if not action:
        found = await promos.recent()
        lines = [
            t(
                actor.lang,
                "admin_promo_line",
                code=c.code,
                n=c.credits,
                used=c.used,
                uses=c.max_uses,
                state=t(actor.lang, f"promo_state_{c.state}"),
                until=f"{c.expires_at:%Y-%m-%d %H:%M}" if c.expires_at else "—",
            )
            for c in found
        ]
        await actor.send("\n".join(lines) if lines else t(actor.lang, "admin_promos_none"))
    elif action == "new":
        await _new_code(actor, rest.split())
    elif action == "off":
        code = normalize_code(rest)
        status = await promos.disable(code) if code else "unknown"
        await actor.say(f"admin_promo_{status}", code=code or rest.strip()[:32] or "?")
    else:
        await actor.say("admin_promos_usage")


async def _new_code(actor: Scope, parts: list[str]) -> None:
    code = normalize_code(parts[0]) if parts else None
    numbers = [parse_int(p, max_digits=7) for p in parts[1:]]
    limits = (10_000, 1_000_000, 3650)  # credits, uses, days
    if (
        code is None
        or len(numbers) not in (2, 3)
        or any(n is None or not 0 < n <= top for n, top in zip(numbers, limits, strict=False))
    ):
        await actor.say("admin_promos_usage")
        return
    credits, uses, days = (n or 0 for n in (*numbers, 0)[:3])
    expires = datetime.now(UTC) + timedelta(days=days) if days else None
    if not await promos.create(code, credits, uses, expires, actor.uid):
        await actor.say("admin_promo_exists", code=code)
        return
    username = actor.ctx.bot_username
    await actor.say(
        "admin_promo_created",
        code=code,
        n=credits,
        uses=uses,
        until=f"{expires:%Y-%m-%d %H:%M} UTC" if expires else "—",
        link=f"https://t.me/{username}?start=promo_{code}" if username else "—",
    )


_HANDLERS = {
    "stats": stats,
    "user": user,
    "grant": grant,
    "refund": refund,
    "broadcast": broadcast,
    "promos": promo_codes,
}

__all__ = ["COMMANDS", "handle"]
