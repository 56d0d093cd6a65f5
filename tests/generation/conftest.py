"""Generations end to end: the whole engine (real PostgreSQL, real S3) with the real openai and
replicate SDKs (inside our providers) talking to the spec-checking fakes.

Fixtures:
- `fake_openai`, `fake_replicate`: the fakes; each test ends by checking that no request broke
  the provider's spec (`violations == []`) and that every scripted fault was triggered.
- `engine(**kw)`: an EngineHarness (not started) whose providers point at the fakes, for tests
  that start and stop engines themselves (restart); `harness(**kw)`: the same, started, and
  stopped when the test ends. Keyword arguments: `pipeline=PipelineConfig(...)`, `outbox=`,
  `fresh=`, settings (ai_concurrency=..., local_fallback=...), `openai_timeout=`.
- `gen`: helpers shared by the test modules (conftests cannot be imported in importlib mode).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from flick.fsm.conversation import State
from flick.i18n import t
from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.pipeline.runner import PipelineConfig
from flick.testing.engine import EngineHarness, make_jpeg
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate

OPENAI_KEY = "sk-test-not-a-real-key"
REPLICATE_TOKEN = "r8_test-not-a-real-token"
VIDEO_MODEL = "wan-video/wan-2.2-i2v-fast"

#: Small budgets so a failing step ends quickly; tests that need other values pass their own.
FAST = PipelineConfig(
    poll_interval=0.02,
    compose_budget=3.0,
    animate_budget=5.0,
    deliver_budget=5.0,
    starting_timeout=5.0,
)


# ---- fakes -------------------------------------------------------------------------------------
@pytest_asyncio.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=OPENAI_KEY, models={"gpt-image-1"}) as fake:
        yield fake
        assert [str(v) for v in fake.violations] == []
        fake.assert_faults_used()


@pytest_asyncio.fixture
async def fake_replicate() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate(
        api_token=REPLICATE_TOKEN,
        start_delay=0.03,
        run_time=0.1,
        models={VIDEO_MODEL},
        require_schemas=True,  # every model's input checked against flick/model_inputs
    ) as fake:
        yield fake
        assert [str(v) for v in fake.violations] == []
        fake.assert_faults_used()


# ---- engines -----------------------------------------------------------------------------------
EngineFactory = Callable[..., EngineHarness]
HarnessFactory = Callable[..., Awaitable[EngineHarness]]


@pytest.fixture
def engine(
    database_url: str,
    storage: Any,
    tmp_path: Path,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> EngineFactory:
    """`engine(**kw)`: an EngineHarness, not yet started, with fresh providers on the fakes (the
    engine closes its providers when it stops, so every engine gets its own)."""
    numbers = itertools.count()

    def make(**kwargs: Any) -> EngineHarness:
        data_dir = kwargs.pop("data_dir", None) or tmp_path / f"engine{next(numbers)}"
        openai_timeout = kwargs.pop("openai_timeout", 10.0)
        kwargs.setdefault("pipeline", FAST)
        kwargs.setdefault(
            "image",
            OpenAIImageProvider(
                api_key=OPENAI_KEY, base_url=fake_openai.base_url, timeout=openai_timeout
            ),
        )
        kwargs.setdefault(
            "video",
            ReplicateVideoProvider(
                api_token=REPLICATE_TOKEN,
                model=VIDEO_MODEL,
                base_url=fake_replicate.base_url,
                timeout=10.0,
            ),
        )
        return EngineHarness(database_url, storage, data_dir, **kwargs)

    return make


@pytest_asyncio.fixture
async def harness(engine: EngineFactory, storage: Any) -> AsyncIterator[HarnessFactory]:
    """`h = await harness(**kw)`: a running engine on the fakes, stopped when the test ends."""
    # SeaweedFS allocates a new bucket's volumes on its first write: do it while the engine starts.
    warm = asyncio.ensure_future(storage.put("warm-up", b"warm", "text/plain"))
    async with AsyncExitStack() as stack:

        async def make(**kwargs: Any) -> EngineHarness:
            h = engine(**kwargs)
            entered, _ = await asyncio.gather(stack.enter_async_context(h), warm)
            return entered

        yield make
    if not warm.done():
        await warm


# ---- helpers -----------------------------------------------------------------------------------
_SQL: list[asyncpg.Pool] = []


@pytest_asyncio.fixture(autouse=True)
async def sql(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The tests' own connections: they read the database between two engines, too."""
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as own:
        _SQL.append(own)
        try:
            yield own
        finally:
            _SQL.remove(own)


def pool() -> asyncpg.Pool:
    return _SQL[-1]


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str, limit: float = 20) -> None:
    """Poll until `predicate()` holds; the limit only turns a hang into a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def start_generation(h: EngineHarness, uid: int, style: str = "hug") -> int:
    """/create, consent, a style and two photos; returns the generation's id once its row
    exists. Does not wait for the generation itself."""
    await h.command(uid, "create")
    await h.settle(generations=False)
    if any((d or "") == "consent" for _, d in h.last_keyboard(uid).buttons()):
        await h.press(uid, "consent", h.last_keyboard(uid).message_id)
        await h.settle(generations=False)
    await h.pick_style(uid, style)
    await h.settle(generations=False)
    await h.photo(uid, make_jpeg("red"))
    await h.photo(uid, make_jpeg("blue"))
    await h.settle(generations=False)
    gen_id = await generation_id(uid)
    assert gen_id is not None, "no generation started"
    return gen_id


async def generation_id(uid: int) -> int | None:
    value = await pool().fetchval('SELECT max(id) FROM generations WHERE "user" = $1', uid)
    return None if value is None else int(value)


async def generation(gen_id: int) -> dict[str, Any]:
    row = await pool().fetchrow("SELECT * FROM generations WHERE id = $1", gen_id)
    assert row is not None, f"generation {gen_id} is gone"
    out = dict(row)
    if isinstance(out.get("image_usage"), str):
        out["image_usage"] = json.loads(out["image_usage"])
    return out


async def wait_for_prediction(gen_id: int, limit: float = 20) -> str:
    """Poll the database until the generation's row holds a prediction id."""

    async def saved() -> bool:
        return bool(
            await pool().fetchval("SELECT prediction_id FROM generations WHERE id = $1", gen_id)
        )

    await wait_for(saved, f"generation {gen_id} saved its prediction id", limit)
    return str(await pool().fetchval("SELECT prediction_id FROM generations WHERE id = $1", gen_id))


async def ledger(uid: int) -> list[tuple[str, int, int, int | None]]:
    rows = await pool().fetch(
        'SELECT reason, delta, balance_after, generation FROM ledger WHERE "user" = $1 ORDER BY id',
        uid,
    )
    return [(r["reason"], r["delta"], r["balance_after"], r["generation"]) for r in rows]


async def session_state(uid: int) -> str | None:
    value = await pool().fetchval('SELECT state FROM user_sessions WHERE "user" = $1', uid)
    return None if value is None else str(value)


def actor_state(h: EngineHarness, uid: int) -> State | None:
    actor = h.app.supervisor.actors.get(uid)
    return None if actor is None else actor.conv.state


def label(h: EngineHarness, style: str = "hug", lang: str = "en") -> str:
    return h.app.supervisor.ctx.styles[style].label(lang)


def status_texts(h: EngineHarness, style: str = "hug", lang: str = "en") -> dict[str, str]:
    """Catalog key -> text of the status message of a generation in `style` (not queued)."""
    keys = ("status_composing", "status_animating", "status_sending", "status_done")
    return {key: t(lang, key, style=label(h, style, lang)) for key in keys}


def status_messages(h: EngineHarness, uid: int, style: str = "hug") -> list[Any]:
    """What the outbox recorded of the generation's one status message (sends and edits)."""
    known = set(status_texts(h, style).values())
    known |= {t("en", "status_queued", style=label(h, style), place=p) for p in range(1, 1000)}
    return [
        s for s in h.outbox.to(uid) if s.method in ("send_text", "edit_text") and s.text in known
    ]


def sent_texts(h: EngineHarness, uid: int) -> list[str]:
    return [s.text for s in h.outbox.to(uid) if s.method == "send_text"]


def videos(h: EngineHarness, uid: int) -> list[Any]:
    return [s for s in h.outbox.to(uid) if s.method == "send_video"]


@pytest.fixture
def gen() -> SimpleNamespace:
    return SimpleNamespace(
        FAST=FAST,
        OPENAI_KEY=OPENAI_KEY,
        REPLICATE_TOKEN=REPLICATE_TOKEN,
        VIDEO_MODEL=VIDEO_MODEL,
        pool=pool,
        wait_for=wait_for,
        start_generation=start_generation,
        generation_id=generation_id,
        generation=generation,
        wait_for_prediction=wait_for_prediction,
        ledger=ledger,
        session_state=session_state,
        actor_state=actor_state,
        label=label,
        status_texts=status_texts,
        status_messages=status_messages,
        sent_texts=sent_texts,
        videos=videos,
        t=t,
        State=State,
    )
