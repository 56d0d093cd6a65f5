"""Photo intake: accept a photo, download and check it beside the loop, then count it in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.handlers.generations import start_generation
from flick.fsm.conversation import State
from flick.pipeline import photos
from flick.storage import photo_key

if TYPE_CHECKING:
    from flick.actors.user import UserActor

_EXPECT = {
    State.CHOOSING_STYLE: "expect_style",
    State.CONSENT: "expect_consent",
}


async def on_photo(actor: UserActor, e: ev.Photo) -> None:
    state = actor.conv.state
    if state is State.PROCESSING:
        await actor.say("busy")
        return
    if state is not State.WAITING_FOR_PHOTOS:
        await actor.say(_EXPECT.get(state, "hint_create"))
        return
    if len(actor.conv.photos) == 2 and actor.conv.balance < 1:
        await actor.offer_packages("no_credits_photos_kept")
        return
    if len(actor.conv.photos) + actor.pending_photos >= 2:
        await actor.say("photos_enough")
        return
    size = e.photo.size or 0
    if size > actor.ctx.photo_limits.max_bytes:
        await actor.say("photo_too_big", mb=_limit_mb(actor))
        return
    actor.pending_photos += 1
    task = asyncio.create_task(_intake(actor, e.photo, actor.conv.epoch))
    if actor.ctx.services is not None:
        actor.ctx.services.track_intake(actor.uid, task)


def _limit_mb(actor: UserActor) -> str:
    return f"{round(actor.ctx.photo_limits.max_bytes / 2**20, 1):g}"


async def _intake(actor: UserActor, photo: ev.PhotoRef, epoch: int) -> None:
    """Download, check and store one photo; report to the mailbox. Runs beside the loop."""
    report: object
    try:
        data = await photos.read_limited(
            actor.ctx.outbox.download(photo), actor.ctx.photo_limits.max_bytes
        )
        jpeg = await photos.normalize(data, actor.ctx.photo_limits)
        key = photo_key(actor.uid, datetime.now(UTC), photo.file_unique_id)
        await actor.ctx.storage.put(key, jpeg, "image/jpeg")
        report = msg.PhotoStored(key, epoch)
    except photos.PhotoRejected as exc:
        report = msg.PhotoRejected(exc.reason, epoch)
    except Exception:
        actor.log.exception("photo intake failed")
        report = msg.PhotoRejected("photo_failed", epoch)
    actor.mailbox.post(report)


async def on_photo_stored(actor: UserActor, m: msg.PhotoStored) -> None:
    if m.epoch != actor.conv.epoch:
        return  # from a conversation the user cancelled; the file stays as a record
    actor.pending_photos = max(0, actor.pending_photos - 1)
    if not actor.conv.trigger("photo_stored"):
        return  # the user cancelled or moved on meanwhile; the file stays as a record
    actor.conv.photos.append(m.key)
    await actor.save()
    if len(actor.conv.photos) == 1:
        await actor.say("photo_one_more")
        return
    await start_generation(actor)


async def on_photo_rejected(actor: UserActor, m: msg.PhotoRejected) -> None:
    if m.epoch != actor.conv.epoch:
        return
    actor.pending_photos = max(0, actor.pending_photos - 1)
    await actor.say(
        m.reason,
        mb=_limit_mb(actor),
        side=actor.ctx.photo_limits.max_side,
    )
