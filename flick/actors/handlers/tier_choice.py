"""The quality tier's button: "tier:<style>:<tier>", checked against the configuration now.

A tier gone from the configuration (reloaded since the buttons were sent) gets a plain answer and
the choice again; nothing is charged. The photos come next, or, when the tier was chosen again
after the first choice vanished at charging time, the generation starts with the photos kept.
"""

from __future__ import annotations

from flick import events as ev
from flick.actors.handlers.generations import start_generation
from flick.actors.handlers.tiers import show_tiers, tier_keys
from flick.actors.scope import Scope
from flick.fsm.conversation import State
from flick.i18n import t


async def btn_tier(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    style_key, _, tier_key = arg.partition(":")
    style = actor.ctx.styles.get(style_key)
    tiers = tier_keys(style) if style is not None else ()
    if not actor.conv.trigger(
        "pick_tier", style=style_key, tier=tier_key, tiers=tiers, message_id=e.message_id
    ):
        gone = (
            style is not None
            and actor.conv.state is State.CHOOSING_TIER
            and actor.conv.style == style_key
            and e.message_id in (None, actor.conv.picker_message_id)
            and tier_key not in tiers
        )
        if not gone:
            await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
            return
        # Its button outlived the configuration (reloaded meanwhile): choose again, for free.
        await actor.ctx.outbox.answer_button(e.callback_id)
        await actor.say("tier_gone")
        assert style is not None
        await show_tiers(actor, style)
        await actor.save()
        return
    await actor.ctx.outbox.answer_button(e.callback_id)
    await actor.save()
    assert style is not None
    if len(actor.conv.photos) == 2:  # chosen again after the first choice vanished
        await start_generation(actor)
        return
    tier = style.route.tier(tier_key)
    assert tier is not None
    await actor.say(
        "send_photos",
        style=f"{style.label(actor.lang)} · {tier.title(actor.lang)}",
    )
