"""Slash commands: /start /help /balance /create /buy /history /language /terms /paysupport.

/cancel has its own module (`cancel`), the payment commands theirs (`payments`).
"""

from __future__ import annotations

from flick import events as ev
from flick.actors.handlers import promos, referrals
from flick.actors.handlers.replies import offer_packages, show_styles
from flick.actors.scope import Scope
from flick.fsm.conversation import State
from flick.fsm.generation import Status
from flick.i18n import LANGUAGES, language_name, t
from flick.models import generations
from flick.ports import Button


async def cmd_start(actor: Scope, e: ev.Command) -> None:
    price = min(p.stars for p in actor.ctx.packages)
    await actor.say(
        "welcome",
        name=actor.user.first_name or "",
        n=actor.conv.balance,
        price=price,
        keyboard=((Button(t(actor.lang, "button_create"), "create"),),),
    )
    # A deep link's parameter: t.me/<bot>?start=promo_CODE or ?start=ref_CODE.
    if e.args.startswith(promos.PREFIX):
        await promos.redeem(actor, e.args.removeprefix(promos.PREFIX), e.event_id)
    elif e.args.startswith(referrals.PREFIX):
        await referrals.arrived_through(actor, e.args.removeprefix(referrals.PREFIX))


async def cmd_help(actor: Scope, e: ev.Command) -> None:
    await actor.say("help")


async def cmd_balance(actor: Scope, e: ev.Command) -> None:
    await actor.say("balance", n=actor.conv.balance)


async def cmd_create(actor: Scope, e: ev.Command | None = None) -> None:
    if actor.conv.state is State.PROCESSING:
        await actor.say("busy")
        return
    if not actor.conv.trigger("create"):
        await offer_packages(actor, "no_credits")
        return
    if actor.conv.state is State.CONSENT:
        await actor.say(
            "consent_ask",
            keyboard=((Button(t(actor.lang, "button_consent"), "consent"),),),
            terms=actor.ctx.settings.terms_text,
        )
    else:
        await show_styles(actor)
    await actor.save()


async def cmd_buy(actor: Scope, e: ev.Command | None = None) -> None:
    await offer_packages(actor, "buy_intro")


async def cmd_history(actor: Scope, e: ev.Command) -> None:
    records = await generations.recent(actor.uid)
    if not records:
        await actor.say("history_empty")
        return
    lines, buttons = [], []
    for r in records:
        style = actor.ctx.styles.get(r.style)
        title = style.label(actor.lang) if style else r.style
        lines.append(
            t(
                actor.lang,
                "history_line",
                id=r.id,
                style=title,
                status=t(actor.lang, f"gen_status_{r.status.value}"),
                date=f"{r.created_at:%Y-%m-%d %H:%M}",
            )
        )
        if r.status is Status.DONE and r.video_key:
            buttons.append((Button(t(actor.lang, "button_resend", id=r.id), f"video:{r.id}"),))
            link = await actor.ctx.storage.presign(r.video_key)
            if link:
                buttons.append((Button(t(actor.lang, "button_link", id=r.id), url=link),))
    await actor.send(t(actor.lang, "history_title") + "\n" + "\n".join(lines), tuple(buttons))


async def cmd_language(actor: Scope, e: ev.Command) -> None:
    # Every catalog present, each named in its own words, two to a row.
    buttons = [Button(language_name(lang), f"lang:{lang}") for lang in LANGUAGES]
    rows = tuple(tuple(buttons[i : i + 2]) for i in range(0, len(buttons), 2))
    await actor.say("language_pick", keyboard=rows)


async def cmd_terms(actor: Scope, e: ev.Command) -> None:
    await actor.say("terms", terms=actor.ctx.settings.terms_text)
