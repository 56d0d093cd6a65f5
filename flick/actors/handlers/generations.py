"""Generations: start one when two photos are in, resume one after a restart, settle its end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flick.actors import messages as msg
from flick.errors import FinalError
from flick.fsm.conversation import State
from flick.i18n import t
from flick.models import ledger, queries
from flick.pipeline.generation import Job
from flick.ports import Button

if TYPE_CHECKING:
    from flick.actors.user import UserActor


async def start_generation(actor: UserActor) -> None:
    style = actor.conv.style or ""
    if not actor.conv.trigger("generate"):
        # Keep the two photos: the generation starts as soon as a payment arrives.
        await actor.offer_packages("no_credits_photos_kept")
        return
    started = await ledger.start_generation(
        actor.uid,
        style,
        (actor.conv.photos[0], actor.conv.photos[1]),
        actor.ctx.runner.image.name,
        actor.ctx.runner.video.name,
    )
    if started is None:  # the database disagrees with memory: the database wins
        actor.conv.trigger("cancel")
        actor.conv.state = State.WAITING_FOR_PHOTOS  # back to waiting, photos kept
        await actor.save()
        await actor.offer_packages("no_credits_photos_kept")
        return
    actor.conv.generation_id, actor.conv.balance = started
    await actor.save()
    actor.ctx.on_metric("credits_spent", {}, 1)
    _launch(actor, actor.conv.generation_id)


async def continue_after_top_up(actor: UserActor) -> None:
    """Two photos were waiting for credit: now that there is some, make the video."""
    if actor.conv.state is State.WAITING_FOR_PHOTOS and len(actor.conv.photos) == 2:
        await start_generation(actor)


def _launch(actor: UserActor, gen_id: int) -> None:
    style = actor.ctx.styles.get(actor.conv.style or "")
    if style is None or actor.ctx.services is None:
        actor.mailbox.post(msg.GenerationEnded(gen_id, _lost("the style is no longer offered")))
        return
    job = Job(gen_id, actor.uid, actor.user.chat_id, actor.lang, style)
    actor.ctx.services.start_generation(job)


def _lost(reason: str) -> FinalError:
    return FinalError(reason, kind="lost", user_reason="generic")


async def on_resume(actor: UserActor, m: msg.ResumeGeneration) -> None:
    if actor.ctx.services and actor.ctx.services.generation_running(m.generation_id):
        return
    row = await queries.get_generation(m.generation_id)
    if row is None or row["refunded"] or row["status"] in ("done", "failed", "canceled"):
        return
    actor.conv.trigger("resume")
    actor.conv.generation_id = m.generation_id
    actor.conv.style = row["style"]
    await actor.save()
    actor.log.info("resuming generation {} at {}", m.generation_id, row["status"])
    _launch(actor, m.generation_id)


async def on_generation_ended(actor: UserActor, m: msg.GenerationEnded) -> None:
    current = actor.conv.trigger("finish", generation_id=m.generation_id)
    if current:
        actor.new_conversation()
        await actor.save()
    if m.error is None:
        actor.ctx.on_metric("generation", {"outcome": "done", "error_class": ""}, 1)
        return
    balance = await ledger.refund_generation(m.generation_id, "failed", m.error.kind, str(m.error))
    actor.ctx.on_metric("generation", {"outcome": "failed", "error_class": m.error.kind}, 1)
    if balance is None:
        return  # already refunded (a /cancel got there first)
    actor.conv.balance = balance
    actor.log.bind(generation_id=m.generation_id).warning(
        "generation failed ({}): {}", m.error.kind, m.error
    )
    await actor.say(
        f"failed_{m.error.user_reason}",
        balance=balance,
        keyboard=((Button(t(actor.lang, "button_another"), "create"),),),
    )
