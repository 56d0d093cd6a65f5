"""Stars purchases inside a user's actor: order, invoice, pre-checkout, credit.

The price always comes from the server's package and order rows; callback data and invoice
payloads are only ever looked up, never believed. Refunds are in `refunds`.
"""

from __future__ import annotations

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.handlers import subscriptions
from flick.actors.handlers.generations import continue_after_top_up
from flick.actors.handlers.referrals import after_first_purchase, bonuses
from flick.actors.handlers.replies import offer_packages
from flick.actors.scope import Scope
from flick.errors import TelegramRefused
from flick.i18n import t
from flick.models import money, orders
from flick.payments.invoices import credits_for, order_id_of, payload_for, precheckout_problem
from flick.payments.packages import CURRENCY, find
from flick.payments.plans import SUBSCRIPTION_PERIOD
from flick.ports import RecipientGone, RecipientUnreachable


async def buy_pressed(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    outbox = actor.ctx.outbox
    if not arg:  # the plain "buy credits" button: show the packages
        await outbox.answer_button(e.callback_id)
        await offer_packages(actor, "buy_intro")
        return
    package = find(actor.ctx.packages, f"buy:{arg}")
    if package is None:
        actor.log.info("refused a made-up package {!r}", arg[:32])
        await outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"), alert=True)
        return
    await outbox.answer_button(e.callback_id)
    order_id = await orders.create(
        actor.uid,
        package.total,
        package.stars,
        actor.ctx.settings.order_ttl_seconds,
        bonus=package.bonus,
    )
    try:
        await outbox.send_invoice(
            actor.user.chat_id,
            title=package.title(actor.lang),
            description=package.description(actor.lang),
            payload=payload_for(order_id),
            currency=CURRENCY,
            amount=package.stars,
            label=package.title(actor.lang),
        )
    except (TelegramRefused, RecipientGone, RecipientUnreachable) as exc:
        # No invoice reached them: the order can never be paid, so it does not stay pending.
        await orders.cancel(order_id)
        actor.log.warning("invoice not sent: {}", exc)
        if isinstance(exc, RecipientGone):
            await actor.mark_blocked()
        else:
            await actor.say("invoice_failed")


async def pre_checkout(actor: Scope, e: ev.PreCheckout) -> None:
    # Telegram waits 10 seconds: answer every query, whatever happens in the check.
    try:
        order_id = order_id_of(e.payload)
        order = await orders.get(order_id) if order_id else None
        problem = precheckout_problem(order, actor.uid, e.currency, e.total_amount)
        plan = order.plan if order is not None else None
        if problem is None and plan is not None and plan not in actor.ctx.plans:
            problem = "precheckout_plan_gone"  # removed since the link was made
        elif plan is not None and problem in ("precheckout_expired", "precheckout_mismatch"):
            problem = "precheckout_plan_link_old"  # for a new link: /subscription, not /buy
    except Exception:
        actor.log.exception("pre-checkout check failed")
        problem = "precheckout_error"
    if problem is None:
        await actor.ctx.outbox.answer_pre_checkout(e.query_id, True)
    else:
        actor.log.info("pre-checkout refused: {}", problem)
        await actor.ctx.outbox.answer_pre_checkout(e.query_id, False, t(actor.lang, problem))


async def succeeded(actor: Scope, e: ev.PaymentSucceeded) -> None:
    """Credit a charge exactly once. A charge we cannot match is still credited: they paid."""
    order_id = order_id_of(e.payload)
    order = await orders.get(order_id) if order_id else None
    if e.recurring or e.first_recurring or (order is not None and order.plan is not None):
        await subscriptions.credit(
            actor,
            charge_id=e.charge_id,
            provider_id=e.provider_charge_id,
            payload=e.payload,
            stars=e.total_amount,
            first=e.first_recurring or not e.recurring,
            until=e.subscription_until,
            source="update",
        )
        return
    await _credit(actor, e.charge_id, e.provider_charge_id, e.payload, e.total_amount, "update")


async def reconciled(actor: Scope, m: msg.ReconciledCharge) -> None:
    """A charge Telegram lists that never reached us as an update: credited the same way (a
    subscription's by its period; whether it was the first is for our records to say)."""
    order_id = order_id_of(m.payload)
    order = await orders.get(order_id) if order_id else None
    if m.subscription_period or (order is not None and order.plan is not None):
        period = m.subscription_period or SUBSCRIPTION_PERIOD
        await subscriptions.credit(
            actor,
            charge_id=m.charge_id,
            provider_id=None,
            payload=m.payload,
            stars=m.stars,
            first=False,
            until=m.date + period if m.date else None,
            source="reconcile",
        )
        return
    await _credit(actor, m.charge_id, None, m.payload, m.stars, "reconcile")


async def _credit(
    actor: Scope, charge_id: str, provider_id: str | None, payload: str, stars: int, source: str
) -> None:
    order_id = order_id_of(payload)
    order = await orders.get(order_id) if order_id else None
    if order is None or order.user_id != actor.uid:
        order_id = None  # someone else's (forwarded) invoice pays for nothing of theirs
        actor.log.warning("payment {} names no order of this user; credited by amount", charge_id)
    credits, bonus = credits_for(order, actor.uid, stars, actor.ctx.packages)
    credited = await money.credit_payment(
        actor.uid,
        charge_id=charge_id,
        provider_charge_id=provider_id,
        payload=payload,
        currency=CURRENCY,
        stars=stars,
        credits=credits,
        order_id=order_id,
        source=source,
        bonus=bonus,
        referral=bonuses(actor),
    )
    if credited is None:
        actor.log.info("payment {} was already credited", charge_id)
        # Perhaps by a handling that never finished (a gateway killed after the credit's commit;
        # Telegram delivers the update again): the video two kept photos wait for still starts.
        # Nothing starts twice: it needs two waiting photos, and finds a generation its request
        # already started.
        await continue_after_top_up(actor)
        return
    actor.conv.balance = credited.balance
    actor.ctx.on_metric("payment", {}, stars)
    actor.ctx.on_metric("credits_granted", {"reason": "purchase"}, credits - bonus)
    if bonus:
        actor.ctx.on_metric("credits_granted", {"reason": "bonus"}, bonus)
        await actor.say("payment_thanks_bonus", n=credits, bonus=bonus, balance=credited.balance)
    else:
        await actor.say("payment_thanks", n=credits, balance=credited.balance)
    await after_first_purchase(actor, credited.referred)
    await continue_after_top_up(actor)


async def paysupport(actor: Scope, e: ev.Command) -> None:
    rows = await orders.recent_payments(actor.uid)
    lines = [
        t(
            actor.lang,
            "paysupport_line",
            date=r["created_at"].strftime("%Y-%m-%d"),
            stars=r["stars_amount"],
            n=r["credits"],
            status=t(actor.lang, f"payment_status_{r['status']}"),
            charge=r["telegram_payment_charge_id"],
        )
        for r in rows
    ]
    await actor.say(
        "paysupport",
        contact=actor.ctx.settings.support_contact,
        payments="\n".join(lines) or t(actor.lang, "paysupport_none"),
    )
