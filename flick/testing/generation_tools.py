"""Reading generations back for the tests on the fakes: the `gen` fixture of tests/generation.

These read through the test's own connection pool (the `sql` fixture), not the engine's: a test
reads the database between two engines, too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from flick.fsm.conversation import State
from flick.i18n import t
from flick.testing.engine import EngineHarness, make_jpeg
from flick.testing.harnesses import FAST
from flick.testing.memory import Sent
from flick.testing.providers import OPENAI_KEY, REPLICATE_TOKEN, VIDEO_MODEL
from flick.testing.waits import until

Entry = tuple[str, int, int, int | None]


def label(h: EngineHarness, style: str = "hug", lang: str = "en") -> str:
    return h.app.supervisor.ctx.styles[style].label(lang)


def status_texts(h: EngineHarness, style: str = "hug", lang: str = "en") -> dict[str, str]:
    """Catalog key -> text of the status message of a generation in `style` (not queued)."""
    keys = ("status_composing", "status_animating", "status_sending", "status_done")
    return {key: t(lang, key, style=label(h, style, lang)) for key in keys}


def status_messages(h: EngineHarness, uid: int, style: str = "hug") -> list[Sent]:
    """What the outbox recorded of the generation's one status message (sends and edits)."""
    known = set(status_texts(h, style).values())
    known |= {t("en", "status_queued", style=label(h, style), place=p) for p in range(1, 1000)}
    return [
        s for s in h.outbox.to(uid) if s.method in ("send_text", "edit_text") and s.text in known
    ]


def sent_texts(h: EngineHarness, uid: int) -> list[str]:
    return [s.text for s in h.outbox.to(uid) if s.method == "send_text"]


def videos(h: EngineHarness, uid: int) -> list[Sent]:
    return [s for s in h.outbox.to(uid) if s.method == "send_video"]


def actor_state(h: EngineHarness, uid: int) -> State | None:
    actor = h.app.supervisor.actors.get(uid)
    return None if actor is None else actor.conv.state


async def choose_style(h: EngineHarness, uid: int, style: str) -> None:
    """/create, consent (when asked) and a style, as the user would, each step handled before
    the next."""
    await h.command(uid, "create")
    await h.settle(generations=False)
    if any((d or "") == "consent" for _, d in h.last_keyboard(uid).buttons()):
        await h.press(uid, "consent", h.last_keyboard(uid).message_id)
        await h.settle(generations=False)
    await h.pick_style(uid, style)
    await h.settle(generations=False)


async def ask_for_a_video(h: EngineHarness, uid: int, style: str) -> None:
    """`choose_style`, then two photos; the generation itself is not waited for."""
    await choose_style(h, uid, style)
    await h.photo(uid, make_jpeg("red"))
    await h.photo(uid, make_jpeg("blue"))
    await h.settle(generations=False)


class GenerationTools:
    """The `gen` fixture: constants of the fakes, and reads through the test's own pool."""

    FAST = FAST
    OPENAI_KEY = OPENAI_KEY
    REPLICATE_TOKEN = REPLICATE_TOKEN
    VIDEO_MODEL = VIDEO_MODEL
    State = State
    t = staticmethod(t)
    label = staticmethod(label)
    status_texts = staticmethod(status_texts)
    status_messages = staticmethod(status_messages)
    sent_texts = staticmethod(sent_texts)
    videos = staticmethod(videos)
    actor_state = staticmethod(actor_state)

    def __init__(self, sql: asyncpg.Pool) -> None:
        self._sql = sql

    def pool(self) -> asyncpg.Pool:
        return self._sql

    @staticmethod
    async def wait_for(
        predicate: Callable[[], Awaitable[bool]], what: str, limit: float = 20
    ) -> None:
        """`flick.testing.waits.until` for an async predicate (the name the tests use)."""
        await until(predicate, what, limit)

    async def start_generation(self, h: EngineHarness, uid: int, style: str = "hug") -> int:
        """/create, consent, a style and two photos; returns the generation's id once its row
        exists. Does not wait for the generation itself."""
        await ask_for_a_video(h, uid, style)
        gen_id = await self.generation_id(uid)
        assert gen_id is not None, "no generation started"
        return gen_id

    async def generation_id(self, uid: int) -> int | None:
        value = await self._sql.fetchval('SELECT max(id) FROM generations WHERE "user" = $1', uid)
        return None if value is None else int(value)

    async def generation(self, gen_id: int | None) -> dict[str, Any]:
        """The generation's row; `gen_id` may come straight from `generation_id()`."""
        assert gen_id is not None, "no generation"
        row = await self._sql.fetchrow("SELECT * FROM generations WHERE id = $1", gen_id)
        assert row is not None, f"generation {gen_id} is gone"
        out = dict(row)
        if isinstance(out.get("image_usage"), str):
            out["image_usage"] = json.loads(out["image_usage"])
        return out

    async def wait_for_prediction(self, gen_id: int, limit: float = 20) -> str:
        """Poll the database until the generation's row holds a prediction id."""
        query = "SELECT prediction_id FROM generations WHERE id = $1"

        async def saved() -> bool:
            return bool(await self._sql.fetchval(query, gen_id))

        await self.wait_for(saved, f"generation {gen_id} saved its prediction id", limit)
        return str(await self._sql.fetchval(query, gen_id))

    async def ledger(self, uid: int) -> list[Entry]:
        rows = await self._sql.fetch(
            'SELECT reason, delta, balance_after, generation FROM ledger WHERE "user" = $1 '
            "ORDER BY id",
            uid,
        )
        return [(r["reason"], r["delta"], r["balance_after"], r["generation"]) for r in rows]

    async def session_state(self, uid: int) -> str | None:
        value = await self._sql.fetchval('SELECT state FROM user_sessions WHERE "user" = $1', uid)
        return None if value is None else str(value)
