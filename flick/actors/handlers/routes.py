"""The dispatch tables: event type, command name and button prefix → handler. Data in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.handlers import balance, buttons, commands, generations, photos, text
from flick.admin import commands as admin
from flick.i18n import t
from flick.payments import flow as payments

if TYPE_CHECKING:
    from flick.actors.user import UserActor

# Any: each handler takes its own message type, which the table's key guarantees.
Handler = Callable[["UserActor", Any], Awaitable[None]]
CommandHandler = Callable[["UserActor", ev.Command], Awaitable[None]]
ButtonHandler = Callable[["UserActor", ev.ButtonPress, str], Awaitable[None]]


async def on_command(actor: UserActor, e: ev.Command) -> None:
    if e.name in admin.COMMANDS:
        await admin.handle(actor, e)
        return
    handler = COMMANDS.get(e.name)
    if handler is None:
        await actor.say("unknown_command")
        return
    await handler(actor, e)


async def on_button(actor: UserActor, e: ev.ButtonPress) -> None:
    kind, _, arg = e.data.partition(":")
    handler = BUTTONS.get(kind)
    if handler is None:
        actor.log.info("unknown callback data {!r}", e.data[:64])
        await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
        return
    await handler(actor, e, arg)


async def on_crash(actor: UserActor, m: msg.Crash) -> None:
    raise RuntimeError("crash requested (test hook)")


EVENTS: dict[type, Handler] = {
    ev.Command: on_command,
    ev.Text: text.on_text,
    ev.Photo: photos.on_photo,
    ev.Unsupported: text.on_unsupported,
    ev.ButtonPress: on_button,
    ev.PreCheckout: payments.pre_checkout,
    ev.PaymentSucceeded: payments.succeeded,
    ev.PaymentRefunded: payments.refunded,
    msg.PhotoStored: photos.on_photo_stored,
    msg.PhotoRejected: photos.on_photo_rejected,
    msg.GenerationEnded: generations.on_generation_ended,
    msg.ResumeGeneration: generations.on_resume,
    msg.Grant: balance.on_grant,
    msg.BalanceChanged: balance.on_balance_changed,
    msg.Crash: on_crash,
}

COMMANDS: dict[str, CommandHandler] = {
    "start": commands.cmd_start,
    "help": commands.cmd_help,
    "create": commands.cmd_create,
    "generate": commands.cmd_create,
    "cancel": commands.cmd_cancel,
    "balance": commands.cmd_balance,
    "buy": commands.cmd_buy,
    "history": commands.cmd_history,
    "language": commands.cmd_language,
    "terms": commands.cmd_terms,
    "paysupport": commands.cmd_paysupport,
}

BUTTONS: dict[str, ButtonHandler] = {
    "create": buttons.btn_create,
    "style": buttons.btn_style,
    "consent": buttons.btn_consent,
    "lang": buttons.btn_language,
    "buy": payments.buy_pressed,
    "video": buttons.btn_video,
    "cancel": buttons.btn_cancel,
}
