"""Inline-button presses: create, style, consent, language, video re-send, cancel.

The "buy:" buttons belong to the payments flow (see `routes.BUTTONS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flick import events as ev
from flick.actors.handlers.commands import cmd_cancel, cmd_create
from flick.i18n import t
from flick.models import queries
from flick.ports import RecipientGone, RecipientUnreachable
from flick.untrusted import parse_int

if TYPE_CHECKING:
    from flick.actors.user import UserActor


async def btn_create(actor: UserActor, e: ev.ButtonPress, arg: str) -> None:
    await actor.ctx.outbox.answer_button(e.callback_id)
    await cmd_create(actor)


async def btn_style(actor: UserActor, e: ev.ButtonPress, arg: str) -> None:
    if not actor.conv.trigger("pick_style", style=arg, message_id=e.message_id):
        await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
        return
    await actor.ctx.outbox.answer_button(e.callback_id)
    actor.conv.style = arg
    await actor.save()
    await actor.say("send_photos", style=actor.ctx.styles[arg].label(actor.lang))


async def btn_consent(actor: UserActor, e: ev.ButtonPress, arg: str) -> None:
    if not actor.conv.trigger("consent"):
        await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
        return
    await actor.ctx.outbox.answer_button(e.callback_id)
    actor.conv.consented = True
    await actor.show_styles()
    await actor.save(consent=True)


async def btn_language(actor: UserActor, e: ev.ButtonPress, arg: str) -> None:
    if arg not in ("en", "ru"):
        await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
        return
    actor.lang = arg
    await queries.set_language(actor.uid, arg)
    await actor.ctx.outbox.answer_button(e.callback_id)
    await actor.say("language_set")


async def btn_video(actor: UserActor, e: ev.ButtonPress, arg: str) -> None:
    await actor.ctx.outbox.answer_button(e.callback_id)
    gen_id = parse_int(arg)
    row = await queries.get_generation(gen_id) if gen_id is not None else None
    if row is None or row["user_id"] != actor.uid or row["status"] != "done":
        await actor.say("video_gone")
        return
    try:
        file_id = await actor.ctx.outbox.send_video(
            actor.user.chat_id,
            row["video_key"],
            t(actor.lang, "video_again"),
            file_id=row["video_file_id"],
        )
    except RecipientGone:
        await actor.mark_blocked()
        return
    except RecipientUnreachable as exc:
        actor.log.warning("video not re-sent: {}", exc)
        return
    if file_id != row["video_file_id"]:
        await queries.update_generation(row["id"], video_file_id=file_id)


async def btn_cancel(actor: UserActor, e: ev.ButtonPress, arg: str) -> None:
    await actor.ctx.outbox.answer_button(e.callback_id)
    await cmd_cancel(actor)
