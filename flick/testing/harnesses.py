"""Engines for tests: factories the `harness`, `engine` and `video_factory` fixtures hand out.

    h = await harness(ai_concurrency=2)     # a running EngineHarness, stopped after the test
    e = engine(fresh=False)                 # not started: `async with e as h:` (restart tests)

Local engines render with the real ffmpeg, only short and small; engines on the fakes use the real
OpenAI and Replicate SDKs (flick.testing.providers) with small pipeline budgets (FAST).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from flick.pipeline.local import LocalVideoProvider
from flick.pipeline.runner import PipelineConfig
from flick.ports import Storage
from flick.testing.engine import EngineHarness
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.inflight import CountingVideo, InFlight
from flick.testing.providers import openai_images, replicate_videos

#: `engine(**options)`: an EngineHarness, not started.
EngineFactory = Callable[..., EngineHarness]
#: `await harness(**options)`: an EngineHarness, started, and stopped when the test ends.
HarnessFactory = Callable[..., Awaitable[EngineHarness]]
#: `video_factory(meter=None, **options)`: a CountingVideo over a LocalVideoProvider.
VideoFactory = Callable[..., CountingVideo]

#: Small budgets so a failing step ends quickly; tests that need other values pass their own.
FAST = PipelineConfig(
    poll_interval=0.02,
    compose_budget=3.0,
    animate_budget=5.0,
    deliver_budget=5.0,
    starting_timeout=5.0,
)

#: Real ffmpeg renders, only short and small.
SMALL_VIDEO: dict[str, Any] = {"duration": 0.25, "fps": 4, "width": 64}


def local_engines(database_url: str, storage: Storage, tmp_path: Path) -> EngineFactory:
    """Engines with the local providers; `database_url=` (e.g. through a DbProxy) and `data_dir=`
    may be given besides the EngineHarness options."""
    numbers = itertools.count()

    def make(**options: Any) -> EngineHarness:
        data_dir = options.pop("data_dir", None) or tmp_path / f"engine{next(numbers)}"
        if "video" not in options:
            options["video"] = LocalVideoProvider(data_dir / "videos", **SMALL_VIDEO)
        url = options.pop("database_url", database_url)
        return EngineHarness(url, storage, data_dir, **options)

    return make


def engines_on_fakes(
    database_url: str,
    storage: Storage,
    tmp_path: Path,
    openai: FakeOpenAI,
    replicate: FakeReplicate,
) -> EngineFactory:
    """Engines whose providers talk to the fakes (each engine gets its own providers, since an
    engine closes its providers when it stops); `openai_timeout=` sets the image client's,
    `database_url=` another way to the database (e.g. through a DbProxy)."""
    numbers = itertools.count()

    def make(**options: Any) -> EngineHarness:
        data_dir = options.pop("data_dir", None) or tmp_path / f"engine{next(numbers)}"
        url = options.pop("database_url", database_url)
        openai_timeout = options.pop("openai_timeout", 10.0)
        options.setdefault("pipeline", FAST)
        if "image" not in options:
            options["image"] = openai_images(openai, timeout=openai_timeout)
        if "video" not in options:
            options["video"] = replicate_videos(replicate, timeout=10.0)
        return EngineHarness(url, storage, data_dir, **options)

    return make


@asynccontextmanager
async def started(storage: Storage, build: EngineFactory) -> AsyncIterator[HarnessFactory]:
    """A HarnessFactory whose engines are all stopped when the block ends."""
    # SeaweedFS allocates a new bucket's volumes on its first write: do it while the engine starts.
    warm = asyncio.ensure_future(storage.put("warm-up", b"warm", "text/plain"))
    async with AsyncExitStack() as stack:

        async def make(**options: Any) -> EngineHarness:
            entered, _ = await asyncio.gather(stack.enter_async_context(build(**options)), warm)
            return entered

        try:
            yield make
        finally:
            await asyncio.gather(warm, return_exceptions=True)


@asynccontextmanager
async def counting_videos(tmp_path: Path) -> AsyncIterator[VideoFactory]:
    """CountingVideos over LocalVideoProviders the test owns, all closed when the block ends."""
    made: list[LocalVideoProvider] = []
    numbers = itertools.count()

    def make(meter: InFlight | None = None, **options: Any) -> CountingVideo:
        inner = LocalVideoProvider(tmp_path / f"videos{next(numbers)}", **(SMALL_VIDEO | options))
        made.append(inner)
        return CountingVideo(inner, meter)

    try:
        yield make
    finally:
        for inner in made:
            await inner.close()
