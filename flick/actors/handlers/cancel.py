"""/cancel (and the Cancel button): forget the photos, or stop a generation and refund it.

The point of no return is the generation's `delivering` status (see `flick.fsm.generation`):
before it, /cancel refunds the credit (once, in the same transaction that ends the generation);
from it on, the video is on its way, the credit stays spent, and the user is told so.
"""

from __future__ import annotations

from flick import events as ev
from flick.actors.scope import Scope
from flick.fsm.conversation import State
from flick.fsm.generation import Status
from flick.models import generations, money


async def cmd_cancel(actor: Scope, e: ev.Command | None = None) -> None:
    state, gen_id = actor.conv.state, actor.conv.generation_id
    if state is State.IDLE:
        await actor.say("nothing_to_cancel")
        return
    if state is not State.PROCESSING or gen_id is None:
        actor.conv.trigger("cancel")
        await actor.save()
        await actor.say("canceled")
        return
    refund = await money.refund_generation(gen_id, "cancel", "canceled", "by the user")
    if refund is None:
        record = await generations.get(gen_id)
        if record is not None and record.status in (Status.DELIVERING, Status.DONE):
            await actor.say("cancel_too_late")  # the video is (on its way) with them
            return
        # It ended otherwise a moment before (failed and refunded): nothing left to stop.
        actor.conv.trigger("cancel")
        await actor.save()
        await actor.say("canceled")
        return
    if actor.ctx.services is not None:
        actor.ctx.services.cancel_generation(gen_id)  # stops its task and its prediction
    actor.conv.balance = refund.balance
    actor.conv.trigger("cancel")
    await actor.save()
    await actor.say("canceled_refunded", balance=refund.balance)
