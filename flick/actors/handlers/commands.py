"""Slash commands: /start /help /balance /create /cancel /buy /history /language /terms …"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flick import events as ev
from flick.fsm.conversation import State
from flick.i18n import t
from flick.models import ledger, queries
from flick.payments import flow as payments
from flick.ports import Button

if TYPE_CHECKING:
    from flick.actors.user import UserActor


async def cmd_start(actor: UserActor, e: ev.Command) -> None:
    price = min(p.stars for p in actor.ctx.packages)
    await actor.say(
        "welcome",
        name=actor.user.first_name or "",
        balance=actor.conv.balance,
        price=price,
        keyboard=((Button(t(actor.lang, "button_create"), "create"),),),
    )


async def cmd_help(actor: UserActor, e: ev.Command) -> None:
    await actor.say("help")


async def cmd_balance(actor: UserActor, e: ev.Command) -> None:
    await actor.say("balance", balance=actor.conv.balance)


async def cmd_create(actor: UserActor, e: ev.Command | None = None) -> None:
    if actor.conv.state is State.PROCESSING:
        await actor.say("busy")
        return
    if not actor.conv.trigger("create"):
        await actor.offer_packages("no_credits")
        return
    actor.new_conversation()
    if actor.conv.state is State.CONSENT:
        await actor.say(
            "consent_ask",
            keyboard=((Button(t(actor.lang, "button_consent"), "consent"),),),
            terms=actor.ctx.settings.terms_text,
        )
    else:
        await actor.show_styles()
    await actor.save()


async def cmd_cancel(actor: UserActor, e: ev.Command | None = None) -> None:
    state, gen_id = actor.conv.state, actor.conv.generation_id
    if state is State.IDLE:
        await actor.say("nothing_to_cancel")
        return
    actor.conv.trigger("cancel")
    actor.new_conversation()
    await actor.save()
    if state is State.PROCESSING and gen_id is not None:
        if actor.ctx.services is not None:
            actor.ctx.services.cancel_generation(gen_id)
        balance = await ledger.refund_generation(gen_id, "canceled", "canceled", "by the user")
        if balance is None:  # it was delivered (or ended) a moment before: nothing to refund
            await actor.say("canceled")
        else:
            actor.conv.balance = balance
            await actor.say("canceled_refunded", balance=balance)
    else:
        await actor.say("canceled")


async def cmd_buy(actor: UserActor, e: ev.Command | None = None) -> None:
    await actor.offer_packages("buy_intro")


async def cmd_history(actor: UserActor, e: ev.Command) -> None:
    rows = await queries.recent_generations(actor.uid)
    if not rows:
        await actor.say("history_empty")
        return
    lines, buttons = [], []
    for row in rows:
        style = actor.ctx.styles.get(row["style"])
        title = style.label(actor.lang) if style else row["style"]
        lines.append(
            t(
                actor.lang,
                "history_line",
                id=row["id"],
                style=title,
                status=t(actor.lang, f"gen_status_{row['status']}"),
                date=row["created_at"].strftime("%Y-%m-%d %H:%M"),
            )
        )
        if row["status"] == "done" and row["video_key"]:
            buttons.append(
                (Button(t(actor.lang, "button_resend", id=row["id"]), f"video:{row['id']}"),)
            )
            link = await actor.ctx.storage.presign(row["video_key"])
            if link:
                buttons.append((Button(t(actor.lang, "button_link", id=row["id"]), url=link),))
    await actor.send(t(actor.lang, "history_title") + "\n" + "\n".join(lines), tuple(buttons))


async def cmd_language(actor: UserActor, e: ev.Command) -> None:
    await actor.say(
        "language_pick",
        keyboard=((Button("English", "lang:en"), Button("Русский", "lang:ru")),),
    )


async def cmd_terms(actor: UserActor, e: ev.Command) -> None:
    await actor.say("terms", terms=actor.ctx.settings.terms_text)


async def cmd_paysupport(actor: UserActor, e: ev.Command) -> None:
    await payments.paysupport(actor)
