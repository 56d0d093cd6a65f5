"""Photo intake: accept a photo, download and check it beside the loop, then count it in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.handlers.generations import start_generation
from flick.actors.handlers.replies import offer_packages
from flick.actors.scope import Scope
from flick.errors import is_transient
from flick.fsm.conversation import State
from flick.pipeline import imaging
from flick.storage import photo_key

T = TypeVar("T")

_EXPECT = {
    State.CHOOSING_STYLE: "expect_style",
    State.CHOOSING_TIER: "expect_tier",
    State.CONSENT: "expect_consent",
}


async def on_photo(actor: Scope, e: ev.Photo) -> None:
    if e.event_id in actor.conv.photo_events:
        actor.handled(e.event_id)  # counted before a restart: a redelivery, nothing to do
        return
    reply = _refusal(actor, e)
    if reply is not None:
        actor.handled(e.event_id)  # the reply is the whole answer to this photo
        key, values = reply
        if key == "no_credits_photos_kept":
            await offer_packages(actor, key)
        else:
            await actor.say(key, None, **values)
        return
    # Recorded as handled only once the photo is stored and counted (`on_photo_stored`): a
    # restart before then gets it again from Telegram's redelivery, and nothing is lost.
    actor.conv.pending_photos += 1
    task = asyncio.create_task(_intake(actor, e, actor.conv.epoch))
    if actor.ctx.services is not None:
        actor.ctx.services.track_intake(actor.uid, task)


def _refusal(actor: Scope, e: ev.Photo) -> tuple[str, dict[str, object]] | None:
    state = actor.conv.state
    if state is State.PROCESSING:
        return "busy", {}
    if state is not State.WAITING_FOR_PHOTOS:
        return _EXPECT.get(state, "hint_create"), {}
    if len(actor.conv.photos) == 2 and actor.conv.balance < 1:
        return "no_credits_photos_kept", {}
    if len(actor.conv.photos) + actor.conv.pending_photos >= 2:
        return "photos_enough", {}
    if (e.photo.size or 0) > actor.ctx.photo_limits.max_bytes:
        return "photo_too_big", {"mb": _limit_mb(actor)}
    return None


def _limit_mb(actor: Scope) -> str:
    return f"{round(actor.ctx.photo_limits.max_bytes / 2**20, 1):g}"


async def _intake(actor: Scope, e: ev.Photo, epoch: int) -> None:
    """Download, check and store one photo; report to the mailbox. Runs beside the loop.

    Telegram or S3 failing for a moment is retried within the handler budget; a photo that
    still cannot be stored is reported as failed, and its redelivery is taken again.
    """
    photo = e.photo
    limits = actor.ctx.photo_limits

    async def retried(call: Callable[[], Awaitable[T]]) -> T:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_random_exponential(multiplier=0.2, max=5.0),
            stop=stop_after_delay(actor.ctx.settings.retry_seconds),
            reraise=True,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity returns or raises")

    report: object
    try:
        data = await retried(
            lambda: imaging.read_limited(actor.ctx.outbox.download(photo), limits.max_bytes)
        )
        jpeg = await imaging.normalize(data, limits)  # what the user sent: never retried
        key = photo_key(actor.uid, datetime.now(UTC), photo.file_unique_id)
        await retried(lambda: actor.ctx.storage.put(key, jpeg, "image/jpeg"))
        report = msg.PhotoStored(key, epoch, e.event_id)
    except imaging.PhotoRejected as exc:
        report = msg.PhotoRejected(exc.reason, epoch, e.event_id)
    except Exception:
        actor.log.exception("photo intake failed")
        report = msg.PhotoRejected("photo_failed", epoch, e.event_id, retry=True)
    actor.post(actor.uid, report)


async def on_photo_stored(actor: Scope, m: msg.PhotoStored) -> None:
    if m.epoch != actor.conv.epoch:
        actor.handled(m.event_id)
        return  # from a conversation the user cancelled; the file stays as a record
    actor.conv.pending_photos = max(0, actor.conv.pending_photos - 1)
    if not actor.conv.trigger("photo_stored", key=m.key, event_id=m.event_id):
        actor.handled(m.event_id)
        return  # the user cancelled or moved on meanwhile; the file stays as a record
    await actor.save()  # the photo and its update id, in one statement
    actor.handled(m.event_id)
    if len(actor.conv.photos) == 1:
        await actor.say("photo_one_more")
        return
    await start_generation(actor)


async def on_photo_rejected(actor: Scope, m: msg.PhotoRejected) -> None:
    if m.retry:
        actor.unhandled(m.event_id)
    else:
        actor.handled(m.event_id)
    if m.epoch != actor.conv.epoch:
        return
    actor.conv.pending_photos = max(0, actor.conv.pending_photos - 1)
    await actor.say(m.reason, mb=_limit_mb(actor), side=actor.ctx.photo_limits.max_side)
