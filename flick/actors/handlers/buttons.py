"""Inline-button presses: create, style, consent, language, video re-send, cancel.

The "buy:" buttons belong to the payments handlers (see `routes.BUTTONS`). Callback data is
untrusted: every button is checked against the conversation's state.
"""

from __future__ import annotations

from flick import events as ev
from flick.actors.handlers.cancel import cmd_cancel
from flick.actors.handlers.commands import cmd_create
from flick.actors.handlers.generations import start_generation
from flick.actors.handlers.replies import show_styles
from flick.actors.handlers.tiers import show_tiers, tier_keys
from flick.actors.scope import Scope
from flick.errors import TelegramRefused
from flick.fsm.conversation import State
from flick.fsm.generation import Status
from flick.i18n import LANGUAGES, t
from flick.media import MediaError
from flick.models import generations, sessions
from flick.ports import RecipientGone, RecipientUnreachable
from flick.untrusted import parse_int


async def btn_create(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    await actor.ctx.outbox.answer_button(e.callback_id)
    await cmd_create(actor)


async def btn_style(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    style = actor.ctx.styles.get(arg)
    tiers = tier_keys(style) if style is not None else ()
    if not actor.conv.trigger("pick_style", style=arg, message_id=e.message_id, tiers=tiers):
        await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
        return
    await actor.ctx.outbox.answer_button(e.callback_id)
    assert style is not None
    if actor.conv.state is State.CHOOSING_TIER:  # several quality tiers: that choice next
        await show_tiers(actor, style)
        await actor.save()
        return
    await actor.save()
    if len(actor.conv.photos) == 2:  # "Another style" under a video: its photos are in already
        await start_generation(actor)
        return
    await actor.say("send_photos", style=style.label(actor.lang))


async def btn_consent(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    if not actor.conv.trigger("consent"):
        await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
        return
    await actor.ctx.outbox.answer_button(e.callback_id)
    await show_styles(actor)
    await actor.save(consent=True)


async def btn_language(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    if arg not in LANGUAGES:
        await actor.ctx.outbox.answer_button(e.callback_id, t(actor.lang, "button_stale"))
        return
    await sessions.set_language(actor.uid, arg)
    actor.lang = arg
    await actor.ctx.outbox.answer_button(e.callback_id)
    await actor.say("language_set")


async def btn_video(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    await actor.ctx.outbox.answer_button(e.callback_id)
    gen_id = parse_int(arg)
    record = await generations.get(gen_id) if gen_id is not None else None
    if (
        record is None
        or record.user_id != actor.uid
        or record.status is not Status.DONE
        or record.video_key is None
    ):
        await actor.say("video_gone")
        return
    caption = t(actor.lang, "video_again")
    chat, outbox = actor.user.chat_id, actor.ctx.outbox
    try:
        try:
            file_id = await outbox.send_video(
                chat, record.video_key, caption, file_id=record.video_file_id
            )
        except TelegramRefused as exc:
            if record.video_file_id is None:
                raise
            # Telegram no longer has the file its id named: upload our copy instead.
            actor.log.info("re-send by file id refused ({}); uploading it again", exc.error_id)
            file_id = await outbox.send_video(chat, record.video_key, caption)
    except RecipientGone:
        await actor.mark_blocked()
        return
    except RecipientUnreachable as exc:
        actor.log.warning("video not re-sent: {}", exc)
        return
    except (TelegramRefused, MediaError, FileNotFoundError, KeyError) as exc:
        actor.log.warning("video {} could not be re-sent: {}", record.id, exc)
        await actor.say("video_gone")
        return
    if file_id != record.video_file_id:
        await generations.save(record, video_file_id=file_id)


async def btn_cancel(actor: Scope, e: ev.ButtonPress, arg: str) -> None:
    await actor.ctx.outbox.answer_button(e.callback_id)
    await cmd_cancel(actor)
