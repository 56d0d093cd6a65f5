"""Free text and messages the bot cannot use: a hint at what it expects now."""

from __future__ import annotations

from flick import events as ev
from flick.actors.scope import Scope
from flick.fsm.conversation import State
from flick.i18n import t

_KINDS = {
    "kind_sticker",
    "kind_voice",
    "kind_video",
    "kind_location",
    "kind_contact",
    "kind_document",
    "kind_audio",
    "kind_animation",
    "kind_video_note",
    "kind_other",
}


async def on_text(actor: Scope, e: ev.Text) -> None:
    state = actor.conv.state
    key = {
        State.WAITING_FOR_PHOTOS: "expect_photos",
        State.CHOOSING_STYLE: "expect_style",
        State.CHOOSING_AGAIN: "expect_style",
        State.CHOOSING_TIER: "expect_tier",
        State.PROCESSING: "busy",
        State.CONSENT: "expect_consent",
    }.get(state, "hint_create")
    await actor.say(key)


async def on_unsupported(actor: Scope, e: ev.Unsupported) -> None:
    if actor.conv.state is State.WAITING_FOR_PHOTOS:
        await actor.say(
            "not_a_photo",
            kind=t(actor.lang, f"kind_{e.kind}") if f"kind_{e.kind}" in _KINDS else e.kind,
        )
    else:
        await on_text(actor, ev.Text(e.user, e.event_id, ""))
