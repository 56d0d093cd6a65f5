"""Reading an engine's conversation back, and making its events: the `tools` fixture.

Test modules cannot import a conftest (pytest's importlib mode), so the engine tests get these as
one typed bag, `EngineTools`; new code may as well import the functions from here.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from flick import events as ev
from flick.fsm.conversation import State
from flick.i18n import LANGUAGES, catalog, t
from flick.models.db import pool
from flick.pipeline.local import LocalImageProvider
from flick.testing.engine import EngineHarness, make_jpeg
from flick.testing.inflight import CountingImage, CountingVideo, InFlight
from flick.testing.memory import HeldOutbox, Sent
from flick.testing.waits import until

Saved = tuple[str, dict[str, Any]]


async def session(uid: int) -> Saved | None:
    """The saved state and data, without the internal conversation counter (`epoch`)."""
    row = await pool().fetchrow('SELECT state, data FROM user_sessions WHERE "user" = $1', uid)
    if row is None:
        return None
    data = json.loads(row["data"])
    data.pop("epoch", None)
    return str(row["state"]), data


async def saved(uid: int) -> Saved:
    """`session(uid)` for a user who must have one: fails the test if there is none."""
    found = await session(uid)
    assert found is not None, f"user {uid} has no saved session"
    return found


async def snapshot(h: EngineHarness, uid: int) -> tuple[Any, ...]:
    """What must not change when the user sends something the bot refuses."""
    saved = await session(uid)
    actor = h.app.supervisor.actors.get(uid)
    live = None if actor is None else (actor.conv.state, list(actor.conv.photos), actor.conv.style)
    gens = await pool().fetchval('SELECT count(*) FROM generations WHERE "user" = $1', uid)
    return saved, live, await h.balance(uid), await h.ledger_sum(uid), gens


def _status_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for lang in LANGUAGES:
        for key, text in catalog(lang).texts.items():
            if key.startswith("status_"):
                parts = re.split(r"\{[a-z_]+\}", text)
                patterns.append(re.compile(".*".join(map(re.escape, parts)) + r"\Z", re.S))
    return patterns


STATUS = _status_patterns()


def is_status(text: str) -> bool:
    """A generation's progress message (composing, animating, ...), edited as it moves."""
    return any(p.match(text) for p in STATUS)


def texts(h: EngineHarness, uid: int) -> list[str]:
    """The messages the user got from the conversation (not the generation's status messages)."""
    return [s.text for s in h.outbox.to(uid) if s.method == "send_text" and not is_status(s.text)]


def calls(h: EngineHarness, method: str, uid: int | None = None) -> list[Sent]:
    return [s for s in h.outbox.sent if s.method == method and (uid is None or s.chat_id == uid)]


def answers(h: EngineHarness, callback_id: str) -> list[Sent]:
    return [
        s
        for s in h.outbox.sent
        if s.method == "answer_button" and s.extra.get("callback_id") == callback_id
    ]


def photo_event(
    h: EngineHarness,
    uid: int,
    data: bytes | None = None,
    *,
    size: int | Literal["real"] | None = "real",
    document: bool = False,
    media_group: str | None = None,
) -> ev.Photo:
    """A photo event (not yet sent) whose bytes the outbox will serve; `size` is what Telegram
    declares (the real size, another number, or nothing)."""
    file_id = h.next_id("file")
    h.outbox.files[file_id] = make_jpeg() if data is None else data
    real = len(h.outbox.files[file_id])
    ref = ev.PhotoRef(
        file_id, f"u{file_id}", real if size == "real" else size, as_document=document
    )
    return ev.Photo(h.user(uid), h.next_id(), ref, media_group)


async def to_photos(h: EngineHarness, uid: int, style: str = "hug") -> None:
    """/create (with consent when asked) and a style: the user is WAITING_FOR_PHOTOS."""
    await h.command(uid, "create")
    await h.settle()
    if any(d == "consent" for _, d in h.last_keyboard(uid).buttons()):
        await h.press(uid, "consent", h.last_keyboard(uid).message_id)
        await h.settle()
    await h.pick_style(uid, style)
    await h.settle()
    saved = await session(uid)
    assert saved is not None and saved[0] == State.WAITING_FOR_PHOTOS.value, saved


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str, limit: float = 30) -> None:
    """`flick.testing.waits.until` for an async predicate (the name the engine tests use)."""
    await until(predicate, what, limit)


async def quiet(h: EngineHarness, limit: float = 30) -> None:
    """Wait until every mailbox is empty and no actor is busy, ignoring photo downloads and
    generations in progress (for tests that hold those on purpose)."""
    sup = h.app.supervisor

    async def idle() -> bool:
        if sup.mailbox_depth() or any(a.busy for a in sup.actors.values()):
            return False
        await asyncio.sleep(0)
        return not sup.mailbox_depth() and not any(a.busy for a in sup.actors.values())

    await wait_for(idle, "the mailboxes drained", limit)


class Barrier:
    """A message no actor has a handler for: actors ignore it. It is only consumed once the actor
    has loaded its user, so an empty mailbox after it means the actor is ready."""


async def settle_all(h: EngineHarness, *uids: int, generations: bool = True) -> None:
    """h.settle(), and also wait for actors that are still loading their user (a restarted
    actor is neither busy nor holding mail while it reads the database)."""
    sup = h.app.supervisor
    for uid in uids or list(sup.actors):
        if uid in sup.actors:
            sup.post(uid, Barrier())
    await h.settle(generations=generations)


async def generation_status(gen_id: int) -> str:
    return str(await pool().fetchval("SELECT status FROM generations WHERE id = $1", gen_id))


async def ledger(uid: int) -> list[dict[str, Any]]:
    rows = await pool().fetch('SELECT * FROM ledger WHERE "user" = $1 ORDER BY id', uid)
    return [dict(r) for r in rows]


class EngineTools:
    """The `tools` fixture of tests/engine: the functions above, the doubles, and what tests compare
    with (`t`, `State`), under the names the tests use."""

    session = staticmethod(session)
    saved = staticmethod(saved)
    snapshot = staticmethod(snapshot)
    is_status = staticmethod(is_status)
    texts = staticmethod(texts)
    calls = staticmethod(calls)
    answers = staticmethod(answers)
    photo_event = staticmethod(photo_event)
    to_photos = staticmethod(to_photos)
    wait_for = staticmethod(wait_for)
    quiet = staticmethod(quiet)
    settle_all = staticmethod(settle_all)
    generation_status = staticmethod(generation_status)
    ledger = staticmethod(ledger)
    t = staticmethod(t)
    jpeg = staticmethod(make_jpeg)
    State = State
    CountingImage = CountingImage
    CountingVideo = CountingVideo
    InFlight = InFlight
    HeldOutbox = HeldOutbox
    LocalImageProvider = LocalImageProvider
