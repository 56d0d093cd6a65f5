"""Star subscriptions inside a user's actor: /subscription, its buttons, its payments, and what
Telegram reports about it.

A plan is sold as an invoice link with Telegram's 30-day period. The first payment and every
renewal credit the plan's credits exactly once (`money.credit_subscription`, by charge id);
Telegram repeats the invoice payload on each renewal, which names the subscription. Renewal is
turned off or on by the bot (`payments.botCancelStarsSubscription`) or by the user in Telegram
(`updateBotStarsSubscription`); the period paid for always runs to its end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flick import events as ev
from flick.actors.handlers.generations import continue_after_top_up
from flick.actors.handlers.referrals import after_first_purchase, bonuses
from flick.actors.scope import Scope
from flick.errors import TelegramRefused, TransientError
from flick.i18n import t
from flick.models import money, orders, subscriptions
from flick.models.subscriptions import SubscriptionRecord
from flick.payments.invoices import credits_for, order_id_of, payload_for
from flick.payments.packages import CURRENCY
from flick.payments.plans import SUBSCRIPTION_PERIOD
from flick.payments.plans import keyboard as plans_keyboard
from flick.ports import Button, RecipientGone, RecipientUnreachable
from flick.untrusted import parse_int

_TELEGRAM_TROUBLE = (TelegramRefused, TransientError, RecipientGone, RecipientUnreachable)


def _date(when: datetime) -> str:
    return f"{when:%Y-%m-%d}"


# ---- /subscription and its buttons -------------------------------------------------------------


async def cmd_subscription(actor: Scope, e: ev.Command | None = None) -> None:
    sub = await subscriptions.current(actor.uid)
    if sub is not None and sub.active:
        await _show(actor, sub)
        return
    if not actor.ctx.plans:
        await actor.say("subscription_none_offered")
        return
    ended = t(actor.lang, "subscription_ended", date=_date(sub.period_end)) if sub else ""
    await actor.say(
        "subscription_offer",
        plans_keyboard(actor.ctx.plans, actor.lang),
        ended=ended,
        balance=actor.conv.balance,
    )


async def _show(actor: Scope, sub: SubscriptionRecord) -> None:
    if sub.renews:
        key, button = "subscription_renewing", ("button_sub_cancel", f"sub:cancel:{sub.id}")
    else:
        key, button = "subscription_not_renewing", ("button_sub_resume", f"sub:resume:{sub.id}")
    notes = []
    if sub.payment_failed:
        notes.append(t(actor.lang, "subscription_note_failed"))
    if sub.plan not in actor.ctx.plans:
        notes.append(t(actor.lang, "subscription_note_gone"))
    text = t(
        actor.lang,
        key,
        plan=t(actor.lang, "plan_title", n=sub.credits),
        n=sub.credits,
        stars=sub.stars,
        date=_date(sub.period_end),
        notes="\n".join(notes),
    )
    await actor.send(text.rstrip(), ((Button(t(actor.lang, button[0]), button[1]),),))


async def subscription_pressed(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    """sub:plan:<key>, sub:cancel:<id>, sub:resume:<id> (checked against the server's rows)."""
    action, _, value = arg.partition(":")
    if action == "plan":
        await _buy_plan(actor, e, value)
        return
    sub_id = parse_int(value, max_digits=18)
    sub = await subscriptions.get(actor.uid, sub_id) if sub_id is not None else None
    if action not in ("cancel", "resume") or sub is None or not sub.active:
        await actor.ctx.outbox.answer_button(
            e.callback_id, t(actor.lang, "button_stale"), alert=True
        )
        return
    await actor.ctx.outbox.answer_button(e.callback_id)
    if action == "cancel":
        await _cancel(actor, sub)
    else:
        await _resume(actor, sub)


async def _buy_plan(actor: Scope, e: ev.ButtonPress, key: str) -> None:
    outbox = actor.ctx.outbox
    plan = actor.ctx.plans.get(key)
    if plan is None:
        actor.log.info("refused a plan not offered {!r}", key[:32])
        await outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"), alert=True)
        return
    current = await subscriptions.current(actor.uid)
    if current is not None and current.active:
        await outbox.answer_button(e.callback_id)
        await actor.say("subscription_already", date=_date(current.period_end))
        return
    await outbox.answer_button(e.callback_id)
    order_id = await orders.create(
        actor.uid,
        plan.credits,
        plan.stars,
        actor.ctx.settings.order_ttl_seconds,
        plan=plan.key,
    )
    try:
        link = await outbox.create_invoice_link(
            title=plan.title(actor.lang),
            description=plan.description(actor.lang),
            payload=payload_for(order_id),
            currency=CURRENCY,
            amount=plan.stars,
            label=plan.title(actor.lang),
            subscription_period=SUBSCRIPTION_PERIOD,
        )
    except (TelegramRefused, RecipientGone, RecipientUnreachable) as exc:
        await orders.cancel(order_id)  # no link: nothing can pay for it
        actor.log.warning("subscription link not made: {}", exc)
        await actor.say("invoice_failed")
        return
    await actor.say(
        "subscription_link",
        ((Button(plan.label(actor.lang), url=link),),),
        n=plan.credits,
        stars=plan.stars,
    )


async def _cancel(actor: Scope, sub: SubscriptionRecord) -> None:
    if not sub.renews:
        await actor.say("subscription_already_off", date=_date(sub.period_end))
        return
    try:
        await actor.ctx.outbox.edit_subscription(actor.uid, sub.charge_id, canceled=True)
    except (TelegramRefused, RecipientUnreachable) as exc:
        actor.log.warning("Telegram refused cancelling subscription {}: {}", sub.id, exc)
        await actor.say("subscription_change_failed")
        return
    await subscriptions.set_renewal(sub.id, False, "bot")
    await actor.say("subscription_canceled", date=_date(sub.period_end))


async def _resume(actor: Scope, sub: SubscriptionRecord) -> None:
    if sub.renews:
        await actor.say("subscription_already_on", date=_date(sub.period_end))
        return
    if sub.plan not in actor.ctx.plans:
        await actor.say("subscription_note_gone")
        return
    if sub.canceled_by == "user":
        # A bot can only undo its own cancellation: the user turned it off in Telegram.
        await actor.say("subscription_resume_in_telegram")
        return
    try:
        await actor.ctx.outbox.edit_subscription(actor.uid, sub.charge_id, canceled=False)
    except (TelegramRefused, RecipientUnreachable) as exc:
        actor.log.warning("Telegram refused restoring subscription {}: {}", sub.id, exc)
        await actor.say("subscription_change_failed")
        return
    await subscriptions.set_renewal(sub.id, True, None)
    await actor.say("subscription_resumed", date=_date(sub.period_end))


# ---- what Telegram reports ---------------------------------------------------------------------


async def changed(actor: Scope, e: ev.SubscriptionChanged) -> None:
    """The user cancelled or restored renewal in Telegram, or a renewal could not be paid."""
    sub = await subscriptions.by_payload(actor.uid, e.payload)
    if sub is None:
        actor.log.warning("subscription update {} for a payload we do not know", e.state)
        return
    date = _date(sub.period_end)
    if e.state == "canceled":
        await subscriptions.set_renewal(sub.id, False, "user")
        await actor.say("subscription_canceled_by_user", date=date)
    elif e.state == "restored":
        await subscriptions.set_renewal(sub.id, True, None)
        await actor.say("subscription_resumed", date=date)
    elif e.state == "payment_failed":
        await subscriptions.set_payment_failed(sub.id)
        await actor.say("subscription_payment_failed", date=date)


async def credit(
    actor: Scope,
    *,
    charge_id: str,
    provider_id: str | None,
    payload: str,
    stars: int,
    first: bool,
    until: int | None,
    source: str,
) -> None:
    """A subscription's payment: the first or a renewal, live or reconciled, exactly once.

    What it brings is what the subscription was sold for (its row, else its order); a payment
    naming neither is credited by its amount, as a purchase would be. A plan the operator has
    removed since is credited all the same (they paid) and not renewed again.
    """
    order_id = order_id_of(payload)
    order = await orders.get(order_id) if order_id else None
    own = order if order is not None and order.user_id == actor.uid else None
    existing = await subscriptions.by_payload(actor.uid, payload)
    if existing is not None:
        plan_key, credits = existing.plan, existing.credits
    elif own is not None and own.plan is not None:
        plan_key, credits = own.plan, own.credits
    else:
        actor.log.warning("subscription payment {} names no plan of this user", charge_id)
        plan_key, credits = "", credits_for(None, actor.uid, stars, actor.ctx.packages)[0]
    period_end = (
        datetime.fromtimestamp(until, UTC)
        if until
        else datetime.now(UTC) + timedelta(seconds=SUBSCRIPTION_PERIOD)
    )
    credited = await money.credit_subscription(
        actor.uid,
        charge_id=charge_id,
        provider_charge_id=provider_id,
        payload=payload,
        stars=stars,
        credits=credits,
        plan=plan_key,
        order_id=own.id if own is not None else None,
        period_end=period_end,
        first=first or existing is None,
        expire_unused=actor.ctx.settings.plan_unused_credits == "expire",
        source=source,
        referral=bonuses(actor),
    )
    if credited is None:
        actor.log.info("subscription payment {} was already credited", charge_id)
        await continue_after_top_up(actor)  # as payments._credit: a handling cut short
        return
    actor.conv.balance = credited.balance
    actor.ctx.on_metric("payment", {}, stars)
    actor.ctx.on_metric("credits_granted", {"reason": "subscription"}, credits)
    date, balance = _date(period_end), credited.balance
    if credited.created:
        await actor.say("subscription_started", n=credits, date=date, balance=balance)
    else:
        note = ""  # what became of the last period's unused credits
        if credited.expired:
            note = t(actor.lang, "subscription_expired_note", n=credited.expired)
        elif credited.carried:
            note = t(actor.lang, "subscription_carried_note", n=credited.carried)
        await actor.say("subscription_renewed", n=credits, date=date, balance=balance, expired=note)
    if plan_key not in actor.ctx.plans:
        # Removed by the operator (or never known): credited, and not renewed again.
        await _stop_renewal(actor, credited.subscription_id, charge_id)
        await actor.say("subscription_plan_gone", n=credits)
    elif not credited.renews:
        # Telegram renewed before the cancellation reached it: credited, still not renewing.
        await actor.say("subscription_renewed_after_cancel", date=_date(period_end))
        if credited.canceled_by == "bot":
            await _stop_renewal(actor, credited.subscription_id, charge_id)
    await after_first_purchase(actor, credited.referred)
    await continue_after_top_up(actor)


async def _stop_renewal(actor: Scope, sub_id: int, charge_id: str) -> None:
    """Turn renewal off here and at Telegram. Telegram's side is best effort: should it renew
    anyway, that renewal is credited and this is tried again."""
    await subscriptions.set_renewal(sub_id, False, "bot")
    sub = await subscriptions.get(actor.uid, sub_id)
    first_charge = sub.charge_id if sub is not None else charge_id
    try:
        await actor.ctx.outbox.edit_subscription(actor.uid, first_charge, canceled=True)
    except _TELEGRAM_TROUBLE as exc:
        actor.log.warning("could not turn renewal of subscription {} off: {}", sub_id, exc)
