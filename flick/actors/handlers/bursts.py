"""Fast input: albums and bursts of photos get one set of replies that agree with what Flick does.

Telegram sends an album as separate messages sharing a media group id, and a user may send
single photos faster than Flick fetches them. The rules:

**Photos Flick can use** (the conversation waits for photos and has room for one):

- They are taken as a *burst*. A burst opens with a photo taken while no burst is open, and every
  photo that arrives before it resolves joins it: an album is one burst, and so are single photos
  sent while the earlier ones are still being fetched.
- Photos are used in the order they were sent. Flick fetches only as many as it still needs (two,
  less any it already holds); the rest wait as spares, unfetched. A photo refused for its content
  (too small, not an image, ...) or one we failed to store is replaced by the next spare, in order.
- A single photo (not part of an album) that will leave the conversation one photo short is
  acknowledged at once ("now send the second one") at the end of the mailbox drain it came in,
  while it is still being fetched, checked and stored: the reply does not wait for the download,
  the normalisation, the storage write or the session save (#19). It is still counted only once
  stored and saved; if it is refused or we fail to store it, its reason (or "send it again")
  follows, and "send the second one" is said again when the conversation still needs it.
- A burst resolves when none of its photos is being fetched. Then, once and in this order: each
  refused photo's own reason (numbered, "Photo 2: ...", when the burst had several); if Flick now
  has two photos and left some out, which ones it used ("I'm using photos 1 and 2 of the 3 you
  sent"); then the video starts, or, holding one photo, "now send the second one". A photo we
  failed to store is told "send it again" only when Flick still needs a photo; when a spare took
  its place, the "which ones it used" line says so instead.
- Photos counted in are saved with the session (their update ids too) and journaled as handled
  only then; spares it did not need are journaled as handled when the burst resolves; a photo we
  failed to store is not, so Telegram's redelivery of it is taken again.
- /cancel during a burst ends it: what is still being fetched reports as stale, spares are dropped.

**Photos Flick does not need** (a video is being made, no /create yet, a style or the consent is
awaited, two photos wait for credit): one reply per burst. A photo gets no reply when a photo
refused for the same reason came earlier in the same mailbox drain (the first reply's actor posts
itself a `DrainMark`; the window closes when the actor reaches it, i.e. after everything that was
queued with it), or when its album (media group) already had its answer, including an album whose
first photos started the video.

Not kept across an actor crash: the successor does not know the burst. Photos still being fetched
report to it and are counted in one by one as they arrive (the plain rule in `handlers.photos`);
unfetched spares of that burst are not used (the user hears the crash apology and sees what was
counted). A Telegram redelivery of any photo has no second effect: the mailbox, the update journal
and the session's photo ids recognise it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from weakref import WeakKeyDictionary

from babel.numbers import format_decimal

from flick import events as ev
from flick.actors import messages as msg
from flick.actors.handlers.generations import start_generation
from flick.actors.scope import Scope
from flick.fsm.conversation import State
from flick.i18n import t

Fetch = Callable[[Scope, ev.Photo], None]
FAILED = "photo_failed"  # a failure of ours, not the photo's
GROUPS_REMEMBERED = 32  # albums answered: enough for any burst, bounded for a long-lived actor


class Stage(Enum):
    SPARE = "spare"  # not fetched (yet): used only if a photo before it is refused
    FETCHING = "fetching"
    STORED = "stored"
    REFUSED = "refused"


@dataclass
class Entry:
    photo: ev.Photo
    number: int  # its place in the burst, from 1, in the order sent
    stage: Stage = Stage.SPARE
    key: str | None = None  # its storage key, once stored
    reason: str | None = None  # a catalog key, once refused
    values: dict[str, str | int] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return self.photo.event_id


@dataclass
class Burst:
    epoch: int  # the conversation it belongs to (see Conversation.epoch)
    had: int  # photos the conversation held when it opened
    entries: list[Entry] = field(default_factory=list)
    acknowledged: bool = False  # "now send the second one" said while its photo was fetched

    def find(self, event_id: str) -> Entry | None:
        # The latest: a photo we failed to store may be taken again when Telegram redelivers it.
        return next((e for e in reversed(self.entries) if e.event_id == event_id), None)

    def counted(self) -> int:
        return sum(e.stage in (Stage.FETCHING, Stage.STORED) for e in self.entries)

    def fetching(self) -> bool:
        return any(e.stage is Stage.FETCHING for e in self.entries)


@dataclass
class Memory:
    """One actor's view of fast input. In memory only; see the module notes on a crash."""

    burst: Burst | None = None
    drain_keys: set[str] = field(default_factory=set)  # refusals answered in this drain
    mark_posted: bool = False
    groups: deque[str] = field(default_factory=lambda: deque(maxlen=GROUPS_REMEMBERED))


# Keyed by the actor object: it survives the handler retries that reload `conv`, and goes with it.
_MEMORY: WeakKeyDictionary[Scope, Memory] = WeakKeyDictionary()


def memory(actor: Scope) -> Memory:
    mem = _MEMORY.get(actor)
    if mem is None:
        mem = _MEMORY[actor] = Memory()
    return mem


def knows(actor: Scope, event_id: str) -> bool:
    """Is this photo being taken in the open burst (so this is a redelivery of it)?"""
    burst = memory(actor).burst
    entry = burst.find(event_id) if burst is not None else None
    return entry is not None and entry.stage is not Stage.REFUSED


# ---- photos Flick does not need ------------------------------------------------------------
def should_answer(actor: Scope, photo: ev.Photo, key: str) -> bool:
    """Whether this refused photo gets the reply `key`: once per drain and per album."""
    mem = memory(actor)
    group = photo.media_group_id
    if group is not None:
        if group in mem.groups:
            return False
        mem.groups.append(group)
    if key in mem.drain_keys:
        return False
    mem.drain_keys.add(key)
    _mark_drain(actor)
    return True


def _mark_drain(actor: Scope) -> None:
    mem = memory(actor)
    if not mem.mark_posted:
        mem.mark_posted = True
        actor.post(actor.uid, msg.DrainMark())


async def on_drain_mark(actor: Scope, m: msg.DrainMark) -> None:
    """Everything queued with the photos before it has been handled: the drain is over."""
    mem = memory(actor)
    mem.drain_keys.clear()
    mem.mark_posted = False
    if mem.burst is not None:
        await _acknowledge(actor, mem.burst)
        await _resolve(actor, mem.burst)  # a burst of photos all refused unseen (too big)


# ---- photos Flick can use ------------------------------------------------------------------
async def take(actor: Scope, photo: ev.Photo, fetch: Fetch) -> None:
    """A photo the conversation can use: into the open burst (or a new one)."""
    mem = memory(actor)
    burst = mem.burst
    if burst is not None and burst.epoch != actor.conv.epoch:
        _drop(actor, burst)
        burst = None
    if burst is None:
        burst = mem.burst = Burst(actor.conv.epoch, len(actor.conv.photos))
    entry = Entry(photo, len(burst.entries) + 1)
    burst.entries.append(entry)
    if (photo.photo.size or 0) > actor.ctx.photo_limits.max_bytes:
        # Telegram told us its size: refused without a download, replaced like any other.
        entry.stage, entry.reason = Stage.REFUSED, "photo_too_big"
        actor.handled(entry.event_id)
    _fill(actor, burst, fetch)
    # At the end of this drain (the rest of an album may be right behind it in the mailbox):
    # a burst with nothing to wait for resolves, a single photo is acknowledged.
    _mark_drain(actor)


async def _acknowledge(actor: Scope, burst: Burst) -> None:
    """Say "now send the second one" before its single photo is stored, when that is what
    storing it will leave the conversation needing. Not for an album (its other photos are on
    their way), nor after a refusal (the burst's reasons come first, when it resolves)."""
    conv = actor.conv
    if (
        burst.acknowledged
        or burst.epoch != conv.epoch
        or conv.state is not State.WAITING_FOR_PHOTOS
        or not burst.fetching()
        or burst.had + burst.counted() != 1
        or any(e.stage is Stage.REFUSED or e.photo.media_group_id for e in burst.entries)
    ):
        return
    await actor.say("photo_one_more")
    burst.acknowledged = True  # after the send: a retried handler says it, not skips it


async def stored(actor: Scope, m: msg.PhotoStored) -> bool:
    """A fetch of the open burst stored its photo. False: not ours (the caller counts it in)."""
    burst = memory(actor).burst
    entry = burst.find(m.event_id) if burst is not None else None
    if burst is None or entry is None or entry.stage in (Stage.SPARE, Stage.REFUSED):
        return False
    if entry.stage is Stage.FETCHING:  # (STORED: this handler is being retried)
        actor.conv.pending_photos = max(0, actor.conv.pending_photos - 1)
        entry.stage, entry.key = Stage.STORED, m.key
    await _resolve(actor, burst)
    return True


async def rejected(actor: Scope, m: msg.PhotoRejected, fetch: Fetch) -> bool:
    """A fetch of the open burst was refused (or failed on our side): the next spare steps in."""
    burst = memory(actor).burst
    entry = burst.find(m.event_id) if burst is not None else None
    if burst is None or entry is None or entry.stage in (Stage.SPARE, Stage.STORED):
        return False
    if entry.stage is Stage.FETCHING:
        actor.conv.pending_photos = max(0, actor.conv.pending_photos - 1)
        entry.stage, entry.reason, entry.values = Stage.REFUSED, m.reason, dict(m.values)
        if m.retry:
            actor.unhandled(m.event_id)  # ours to fix: its redelivery is taken again
        else:
            actor.handled(m.event_id)
    _fill(actor, burst, fetch)
    await _resolve(actor, burst)
    return True


def forget_stale(actor: Scope) -> None:
    """The conversation moved on (/cancel): the burst of the old one ends without a word."""
    mem = memory(actor)
    if mem.burst is not None and mem.burst.epoch != actor.conv.epoch:
        _drop(actor, mem.burst)


def _fill(actor: Scope, burst: Burst, fetch: Fetch) -> None:
    need = 2 - burst.had
    for entry in burst.entries:
        if burst.counted() >= need:
            return
        if entry.stage is Stage.SPARE:
            entry.stage = Stage.FETCHING
            actor.conv.pending_photos += 1
            fetch(actor, entry.photo)


def _drop(actor: Scope, burst: Burst) -> None:
    mem = memory(actor)
    if mem.burst is burst:
        mem.burst = None
    for entry in burst.entries:
        if entry.stage in (Stage.SPARE, Stage.STORED):
            actor.handled(entry.event_id)  # (fetches still running report as stale)


async def _resolve(actor: Scope, burst: Burst) -> None:
    if burst.fetching():
        return
    conv = actor.conv
    if burst.epoch != conv.epoch:
        _drop(actor, burst)
        return
    taken = [
        entry
        for entry in burst.entries
        if entry.stage is Stage.STORED
        and conv.trigger("photo_stored", key=entry.key, event_id=entry.event_id)
    ]
    if taken:
        await actor.save()  # the photos and their update ids, in one statement
    # From here on the burst is settled: a retry after a failed send must not count it again.
    mem = memory(actor)
    if mem.burst is burst:
        mem.burst = None
    for entry in burst.entries:
        if entry.stage in (Stage.SPARE, Stage.STORED):
            actor.handled(entry.event_id)
        group = entry.photo.media_group_id
        if group is not None and group not in mem.groups:
            mem.groups.append(group)
    await _reply(actor, burst, taken)


async def _reply(actor: Scope, burst: Burst, taken: list[Entry]) -> None:
    conv = actor.conv
    waiting = conv.state is State.WAITING_FOR_PHOTOS
    complete = waiting and len(conv.photos) == 2
    several = len(burst.entries) > 1
    for entry in burst.entries:
        if entry.stage is not Stage.REFUSED or entry.reason is None:
            continue
        if complete and entry.reason == FAILED:
            continue  # "send it again" would be wrong: another photo took its place
        text = reason_text(actor, entry.reason, entry.values)
        if several:
            text = t(actor.lang, "photo_numbered", number=entry.number, reason=text)
        await actor.send(text)
    if complete:
        # Say which photos Flick used when some were left out without a reason of their own.
        left_out = any(
            entry.stage is Stage.SPARE or (entry.stage is Stage.REFUSED and entry.reason == FAILED)
            for entry in burst.entries
        )
        n = len(burst.entries)
        if left_out and len(taken) == 2:
            await actor.say("photos_used_two", first=taken[0].number, second=taken[1].number, n=n)
        elif left_out and len(taken) == 1:
            await actor.say("photos_used_one", first=taken[0].number, n=n)
        await start_generation(actor)
    elif waiting and len(conv.photos) == 1 and taken:
        refused = any(entry.stage is Stage.REFUSED for entry in burst.entries)
        if refused or not burst.acknowledged:
            await actor.say("photo_one_more")  # (acknowledged and nothing refused: said already)


def reason_text(actor: Scope, reason: str, values: Mapping[str, str | int]) -> str:
    """A refused photo's reason in the user's language, with its figures filled in."""
    limits = actor.ctx.photo_limits
    filled: dict[str, object] = {
        "mb": f"{round(limits.max_bytes / 2**20, 1):g}",
        "side": limits.max_side,
        "min_side": limits.min_side,
        "format": "?",
    }
    filled.update(values)
    for name in ("pixels", "limit"):  # pixel counts read as megapixels, in the user's locale
        value = values.get(name)
        if isinstance(value, int):
            filled[f"{name}_mp"] = format_decimal(value / 1e6, format="#,##0.#", locale=actor.lang)
    return t(actor.lang, reason, **filled)
