"""Generations from the user's side: start one when two photos are in, settle its end.

Cancel and resume have their own modules (`cancel`, `resume`); the lifecycle itself is declared
in `flick.fsm.generation`, its money in `flick.models.money`.
"""

from __future__ import annotations

from flick.actors import messages as msg
from flick.actors.handlers.replies import offer_packages
from flick.actors.handlers.tiers import priced
from flick.actors.scope import Scope
from flick.errors import FinalError
from flick.fsm.conversation import State
from flick.i18n import t
from flick.models import money
from flick.pipeline.runner import Job
from flick.ports import Button


async def start_generation(actor: Scope) -> None:
    conv = actor.conv
    if conv.state is not State.WAITING_FOR_PHOTOS or len(conv.photos) != 2:
        return
    photos = (conv.photos[0], conv.photos[1])
    style = conv.style or ""
    runner = actor.ctx.runner
    configured = actor.ctx.styles.get(style)
    # The price is the tier's as configured at this moment, never what a button said.
    tier = await priced(actor, configured) if configured is not None else None
    if configured is not None and tier is None:
        return  # the chosen tier is gone: the user chooses again, nothing was charged
    started = await money.start_generation(
        actor.uid,
        style,
        photos,
        # One conversation, one generation: a retried handler finds the one it paid for.
        request_key=f"{conv.epoch}:{photos[0]}:{photos[1]}",
        image_provider=runner.image.name,
        video_provider=runner.video.name,
        price=tier.credits if tier is not None else 1,
        route=configured.route.kind if configured is not None else "compose_animate",
        tier=tier.key if tier is not None else None,
    )
    conv.balance = started.balance
    if started.record is None:
        # Keep the two photos: the generation starts as soon as a payment arrives.
        if tier is not None and tier.credits > 1:
            await offer_packages(actor, "no_credits_tier", n=tier.credits)
        else:
            await offer_packages(actor, "no_credits_photos_kept")
        return
    conv.trigger("generate", generation_id=started.record.id)
    await actor.save()
    if started.fresh:
        actor.ctx.on_metric("credits_spent", {}, started.record.charged)
    launch(actor, started.record.id, handed_over=started.fresh)


async def continue_after_top_up(actor: Scope) -> None:
    """Two photos were waiting for credit: now that there is some, make the video."""
    await start_generation(actor)


def launch(actor: Scope, gen_id: int, handed_over: bool = False) -> None:
    """Have the generation run: its job was handed over with its charge (`handed_over`), or is
    handed over now (a resume, a retried handler)."""
    style = actor.ctx.styles.get(actor.conv.style or "")
    if style is None or actor.ctx.services is None:
        error = FinalError("the style is no longer offered", kind="lost", user_reason="generic")
        actor.post(actor.uid, msg.GenerationEnded(gen_id, error))
        return
    job = Job(gen_id, actor.uid, actor.user.chat_id, actor.lang, style)
    actor.ctx.services.start_generation(job, handed_over)


async def on_generation_ended(actor: Scope, m: msg.GenerationEnded) -> None:
    if m.recipient_gone:
        await actor.mark_blocked()
    if m.error is None:
        # Delivered, or ended elsewhere first (a /cancel that won the race already moved on).
        if actor.conv.trigger("finish", generation_id=m.generation_id, delivered=True):
            await actor.save()
            actor.ctx.on_metric("generation", {"outcome": "done", "error_class": ""}, 1)
        return
    refund = await money.refund_generation(m.generation_id, "fail", m.error.kind, str(m.error))
    if actor.conv.trigger("finish", generation_id=m.generation_id):
        await actor.save()
    actor.ctx.on_metric("generation", {"outcome": "failed", "error_class": m.error.kind}, 1)
    if refund is None:
        return  # it ended otherwise first (a /cancel refunded it)
    actor.conv.balance = refund.balance
    actor.log.bind(generation_id=m.generation_id).warning(
        "generation failed ({}): {}", m.error.kind, m.error
    )
    await actor.say(
        f"failed_{m.error.user_reason}",
        n=refund.balance,
        keyboard=((Button(t(actor.lang, "button_another"), "create"),),),
    )
