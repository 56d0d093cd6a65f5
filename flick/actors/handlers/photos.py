"""Photo intake: accept a photo, download and check it beside the loop, then count it in.

Albums and bursts (several photos at once) are taken together by `bursts`, which also keeps
the replies to photos Flick does not need to one per burst; its notes say how.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.handlers import bursts
from flick.actors.handlers.generations import start_generation
from flick.actors.handlers.replies import offer_packages
from flick.actors.scope import Scope
from flick.fsm.conversation import State
from flick.pipeline import faces, imaging
from flick.retries import retry_transient
from flick.storage import photo_key

T = TypeVar("T")

_EXPECT = {
    State.CHOOSING_STYLE: "expect_style",
    State.CHOOSING_AGAIN: "expect_style",
    State.CHOOSING_TIER: "expect_tier",
    State.CONSENT: "expect_consent",
}


async def on_photo(actor: Scope, e: ev.Photo) -> None:
    if e.event_id in actor.conv.photo_events:
        actor.handled(e.event_id)  # counted before a restart: a redelivery, nothing to do
        return
    if bursts.knows(actor, e.event_id):
        return  # a redelivery while it is being taken; recorded when its burst resolves
    key = _refusal(actor)
    if key is None:
        # Recorded as handled only once the photo is stored and counted: a restart before
        # then gets it again from Telegram's redelivery, and nothing is lost.
        await bursts.take(actor, e, _fetch)
        return
    actor.handled(e.event_id)  # the reply is the whole answer to this photo
    if not bursts.should_answer(actor, e, key):
        return  # its burst (or album) has had this answer already
    if key == "no_credits_photos_kept":
        await offer_packages(actor, key)
    else:
        await actor.say(key)


def _fetch(actor: Scope, e: ev.Photo) -> None:
    task = asyncio.create_task(_intake(actor, e, actor.conv.epoch))
    if actor.ctx.services is not None:
        actor.ctx.services.track_intake(actor.uid, task)


def _refusal(actor: Scope) -> str | None:
    """Why the conversation cannot use a photo now (a catalog key), or None when it can."""
    state = actor.conv.state
    if state is State.PROCESSING:
        return "busy"
    if state is not State.WAITING_FOR_PHOTOS:
        return _EXPECT.get(state, "hint_create")
    if len(actor.conv.photos) >= 2:
        return "no_credits_photos_kept" if actor.conv.balance < 1 else "photos_enough"
    return None


async def _intake(actor: Scope, e: ev.Photo, epoch: int) -> None:
    """Download, check and store one photo; report to the mailbox. Runs beside the loop.

    Telegram or S3 failing for a moment is retried within the handler budget; a photo that
    still cannot be stored is reported as failed, and its redelivery is taken again.
    """
    photo = e.photo
    limits = actor.ctx.photo_limits

    async def retried(call: Callable[[], Awaitable[T]]) -> T:
        return await retry_transient(call, budget=actor.ctx.settings.retry_seconds)

    report: object
    try:
        data = await retried(
            lambda: imaging.read_limited(actor.ctx.outbox.download(photo), limits.max_bytes)
        )
        jpeg = await imaging.normalize(data, limits)  # what the user sent: never retried
        if actor.ctx.faces is not None:  # before it counts, so before anything is paid for
            await faces.check(actor.ctx.faces, jpeg)
        key = photo_key(actor.uid, datetime.now(UTC), photo.file_unique_id)
        await retried(lambda: actor.ctx.storage.put(key, jpeg, "image/jpeg"))
        report = msg.PhotoStored(key, epoch, e.event_id)
    except imaging.PhotoRejected as exc:
        values = tuple(exc.values.items())
        report = msg.PhotoRejected(exc.reason, epoch, e.event_id, values=values)
    except Exception:
        actor.log.exception("photo intake failed")
        report = msg.PhotoRejected("photo_failed", epoch, e.event_id, retry=True)
    actor.post(actor.uid, report)


async def on_photo_stored(actor: Scope, m: msg.PhotoStored) -> None:
    if m.epoch != actor.conv.epoch:
        actor.handled(m.event_id)
        bursts.forget_stale(actor)
        return  # from a conversation the user cancelled; the file stays as a record
    if await bursts.stored(actor, m):
        return
    # A fetch started by this actor's crashed predecessor: counted in as it comes.
    actor.conv.pending_photos = max(0, actor.conv.pending_photos - 1)
    if not actor.conv.trigger("photo_stored", key=m.key, event_id=m.event_id):
        actor.handled(m.event_id)
        if m.event_id in actor.conv.photo_events:
            # Counted already: this handler is being retried after the generation's start
            # failed (e.g. the database went away), so start it now.
            await start_generation(actor)
        return  # the user cancelled or moved on meanwhile; the file stays as a record
    await actor.save()  # the photo and its update id, in one statement
    actor.handled(m.event_id)
    if len(actor.conv.photos) == 1:
        if not actor.conv.pending_photos:
            await actor.say("photo_one_more")
        return
    await start_generation(actor)


async def on_photo_rejected(actor: Scope, m: msg.PhotoRejected) -> None:
    if m.epoch == actor.conv.epoch and await bursts.rejected(actor, m, _fetch):
        return
    if m.retry:
        actor.unhandled(m.event_id)
    else:
        actor.handled(m.event_id)
    if m.epoch != actor.conv.epoch:
        bursts.forget_stale(actor)
        return
    actor.conv.pending_photos = max(0, actor.conv.pending_photos - 1)
    await actor.send(bursts.reason_text(actor, m.reason, dict(m.values)))
