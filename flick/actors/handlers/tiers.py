"""Quality tiers: the step after the style, for a style that offers several (flick/routes.py).

The buttons carry only the style's and the tier's keys ("tier:<style>:<tier>"); the price is read
from the configuration when the credits are taken (`priced`), never from the button. A tier gone
from the configuration by the time it is charged gets a plain answer, the choice again, and costs
nothing. The button itself is handled in `tier_choice`.
"""

from __future__ import annotations

from flick.actors.scope import Scope
from flick.i18n import t
from flick.ports import Button
from flick.routes import Tier
from flick.styles import Style


def tier_keys(style: Style) -> tuple[str, ...]:
    """What the conversation machine's guards read: the style's tiers as configured now."""
    return tuple(tier.key for tier in style.route.tiers)


async def show_tiers(actor: Scope, style: Style) -> None:
    rows = tuple(
        (
            Button(
                t(actor.lang, "tier_button", tier=tier.title(actor.lang), n=tier.credits),
                f"tier:{style.key}:{tier.key}",
            ),
        )
        for tier in style.route.tiers
    )
    actor.conv.picker_message_id = await actor.say(
        "pick_tier", keyboard=rows, style=style.label(actor.lang)
    )


async def priced(actor: Scope, style: Style) -> Tier | None:
    """The tier to charge for, as configured now; None (and the choice offered, nothing
    charged) when the chosen one is gone, or when the style has several now and none was
    chosen (a style with one tier asks nothing: that one is charged)."""
    chosen = actor.conv.tier
    tiers = style.route.tiers
    if chosen is None and len(tiers) == 1:
        return tiers[0]
    tier = style.route.tier(chosen)
    if tier is not None:
        return tier
    if actor.conv.trigger("tier_gone"):
        if chosen is not None:
            await actor.say("tier_gone")
        await show_tiers(actor, style)
        await actor.save()
    return None
