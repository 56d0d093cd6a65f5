"""The dispatch tables: event type, command name and button prefix → handler. Data in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.handlers import (
    admin,
    balance,
    bursts,
    buttons,
    cancel,
    commands,
    generations,
    payments,
    photos,
    promos,
    referrals,
    refunds,
    resume,
    subscriptions,
    text,
)
from flick.actors.scope import Scope
from flick.i18n import t

# Any: each handler takes its own message type, which the table's key guarantees.
Handler = Callable[[Scope, Any], Awaitable[None]]
CommandHandler = Callable[[Scope, ev.Command], Awaitable[None]]
ButtonHandler = Callable[[Scope, ev.ButtonPress, str], Awaitable[None]]


async def on_command(actor: Scope, e: ev.Command) -> None:
    if e.name in admin.COMMANDS:
        await admin.handle(actor, e)
        return
    handler = COMMANDS.get(e.name)
    if handler is None:
        await actor.say("unknown_command")
        return
    await handler(actor, e)


async def on_button(actor: Scope, e: ev.ButtonPress) -> None:
    kind, _, arg = e.data.partition(":")
    handler = BUTTONS.get(kind)
    if handler is None:
        actor.log.info("unknown callback data {!r}", e.data[:64])
        await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
        return
    await handler(actor, e, arg)


async def on_crash(actor: Scope, m: msg.Crash) -> None:
    raise RuntimeError("crash requested (test hook)")


EVENTS: dict[type, Handler] = {
    ev.Command: on_command,
    ev.Text: text.on_text,
    ev.Photo: photos.on_photo,
    ev.Unsupported: text.on_unsupported,
    ev.ButtonPress: on_button,
    ev.PreCheckout: payments.pre_checkout,
    ev.PaymentSucceeded: payments.succeeded,
    ev.PaymentRefunded: refunds.refunded,
    ev.SubscriptionChanged: subscriptions.changed,
    msg.PhotoStored: photos.on_photo_stored,
    msg.PhotoRejected: photos.on_photo_rejected,
    msg.DrainMark: bursts.on_drain_mark,
    msg.GenerationEnded: generations.on_generation_ended,
    msg.ResumeGeneration: resume.on_resume,
    msg.Grant: balance.on_grant,
    msg.RefundPurchase: refunds.refund_ordered,
    msg.AdminReport: balance.on_admin_report,
    msg.ReconciledCharge: payments.reconciled,
    msg.RecipientBlocked: balance.on_recipient_blocked,
    msg.ReferralBonus: referrals.on_referral_bonus,
    msg.Crash: on_crash,
}

COMMANDS: dict[str, CommandHandler] = {
    "start": commands.cmd_start,
    "help": commands.cmd_help,
    "create": commands.cmd_create,
    "generate": commands.cmd_create,
    "cancel": cancel.cmd_cancel,
    "balance": commands.cmd_balance,
    "buy": commands.cmd_buy,
    "history": commands.cmd_history,
    "language": commands.cmd_language,
    "terms": commands.cmd_terms,
    "paysupport": payments.paysupport,
    "subscription": subscriptions.cmd_subscription,
    "promo": promos.cmd_promo,
    "invite": referrals.cmd_invite,
}

BUTTONS: dict[str, ButtonHandler] = {
    "create": buttons.btn_create,
    "style": buttons.btn_style,
    "consent": buttons.btn_consent,
    "lang": buttons.btn_language,
    "buy": payments.buy_pressed,
    "video": buttons.btn_video,
    "cancel": buttons.btn_cancel,
    "sub": subscriptions.subscription_pressed,
}
