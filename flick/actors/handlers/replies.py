"""Replies several handlers send: the style picker and the package offer."""

from __future__ import annotations

from flick.actors.handlers.samples import show_samples
from flick.actors.scope import Scope
from flick.payments.packages import keyboard as packages_keyboard
from flick.ports import Button


async def show_styles(actor: Scope) -> None:
    await show_samples(actor)
    buttons = [Button(s.label(actor.lang), f"style:{s.key}") for s in actor.ctx.styles.values()]
    rows = tuple(tuple(buttons[i : i + 2]) for i in range(0, len(buttons), 2))
    picker = await actor.say("pick_style", keyboard=rows, n=actor.conv.balance)
    actor.conv.picker_message_id = picker


async def offer_packages(actor: Scope, key: str, **values: object) -> None:
    await actor.say(
        key,
        balance=actor.conv.balance,
        keyboard=packages_keyboard(actor.ctx.packages, actor.lang),
        **values,
    )
