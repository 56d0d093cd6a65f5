"""Resume after a restart: the supervisor hands each unfinished generation to its user's actor,
which starts it again from its record (a stored image is reused, a prediction polled)."""

from __future__ import annotations

from flick.actors import messages as msg
from flick.actors.handlers.generations import launch
from flick.actors.scope import Scope
from flick.models import generations


async def on_resume(actor: Scope, m: msg.ResumeGeneration) -> None:
    if actor.ctx.services and actor.ctx.services.generation_running(m.generation_id):
        return
    record = await generations.get(m.generation_id)
    if record is None or not record.active or record.user_id != actor.uid:
        return
    actor.conv.trigger("resume", generation_id=m.generation_id, style=record.style)
    await actor.save()
    actor.log.info("resuming generation {} at {}", m.generation_id, record.status.value)
    launch(actor, m.generation_id)
