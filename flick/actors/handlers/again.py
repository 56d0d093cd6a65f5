"""The buttons under a delivered video: "Try again" (the same photos and style) and "Another
style" (the same photos, a style from the picker). No new upload: a new generation from the
photos already stored, paid like any other through `money.start_generation`.

Callback data is untrusted: the video must be this user's, finished, and their latest (the
conversation remembers it). A double tap or a redelivered press is charged once: the first press
moves the conversation on (a second one finds a video being made), and the money's request key
is the conversation's epoch with the photos, which a retried handler finds again.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from flick import events as ev
from flick.actors.handlers.generations import start_generation
from flick.actors.handlers.replies import offer_packages, show_styles
from flick.actors.scope import Scope
from flick.fsm.conversation import State
from flick.fsm.generation import GenerationRecord, Status
from flick.i18n import t
from flick.models import generations
from flick.pipeline.photo_sweeper import expired
from flick.ports import Button
from flick.untrusted import parse_int

#: Photos this close to their deletion count as gone already, so that a generation never
#: starts on photos the sweeper is about to delete.
MARGIN = timedelta(minutes=5)


async def btn_again_style(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    """ "Another style": the style picker, then a generation from the same photos."""
    source = await _source(actor, e, arg)
    if source is None:
        return
    if not actor.conv.trigger("again_style", video=source.id, photos=source.photo_keys):
        await actor.say("again_stale")
        return
    await show_styles(actor)
    await actor.save()


async def btn_try_again(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    """ "Try again": a new generation from the same photos in the same style."""
    source = await _source(actor, e, arg)
    if source is None:
        return
    conv = actor.conv
    if source.style not in actor.ctx.styles:  # no longer offered: another one, same photos
        if not conv.trigger("again_style", video=source.id, photos=source.photo_keys):
            await actor.say("again_stale")
            return
        await actor.say("again_style_gone")
        await show_styles(actor)
        await actor.save()
        return
    same = {
        "video": source.id,
        "photos": source.photo_keys,
        "style": source.style,
        "tier": source.tier,  # a tier gone since is chosen again when charging
    }
    if not conv.trigger("again_same", **same):
        await actor.say("again_stale")
        return
    await actor.save()
    await start_generation(actor)


async def _source(actor: Scope, e: ev.ButtonPress, arg: str) -> GenerationRecord | None:
    """The video whose button was pressed, when its photos can be used again now; else the
    user is told why (nothing is charged) and None."""
    await actor.ctx.outbox.answer_button(e.callback_id)
    conv = actor.conv
    if conv.state is State.PROCESSING:
        await actor.say("busy")
        return None
    gen_id = parse_int(arg)
    record = await generations.get(gen_id) if gen_id is not None else None
    if (
        record is None
        or record.user_id != actor.uid
        or record.status is not Status.DONE
        or record.id != conv.last_video
    ):
        await actor.say("again_stale")
        return None
    if not await _kept(actor, record.photo_keys):
        create = Button(t(actor.lang, "button_create"), "create")
        # Plural forms key on a whole number: a keep of part of an hour (tests) reads "1 hour".
        hours = math.ceil(actor.ctx.settings.photo_keep_hours)
        await actor.say("photos_expired", keyboard=((create,),), n=hours)
        return None
    if conv.balance < 1:
        await offer_packages(actor, "no_credits")
        return None
    return record


async def _kept(actor: Scope, keys: tuple[str, str]) -> bool:
    keep = timedelta(hours=actor.ctx.settings.photo_keep_hours)
    soon = datetime.now(UTC) + MARGIN
    if any(expired(key, soon, keep) for key in keys):
        return False
    for key in keys:  # deleted some other way (an operator, a lost bucket): gone all the same
        try:
            await actor.ctx.storage.size(key)
        except (KeyError, FileNotFoundError):
            return False
    return True
