"""A `flick worker` SIGKILLed inside each step of a generation: another worker finishes it with
nobody acting (its job taken once the dead worker's heartbeat is HEARTBEAT seconds old), and the
user gets one video, charged once, refunded nothing, from one prediction created once.

Workers are real `flick worker` children (flick.testing.workers); the fakes run in this process,
so a step is held where a provider answers (an image request left unanswered, the video's
download held); the steps no provider takes part in are held in the worker itself, at a fault
point of the test kit's (flick.testing.worker_faults: before the S3 copy, before the hand-back).
Killed mid-prediction: test_workers.py.

A compose killed mid-request is paid for again, and nothing can prevent it: OpenAI's images API
takes no idempotency key and keeps no list of its answers, so the picture the killed request may
have made can be neither found nor reused. The next worker composes once more: at most one
picture more per kill. Every later step reuses what the row holds and pays nothing again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate, Fault
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import HarnessFactory
from flick.testing.waits import until
from flick.testing.worker_checks import (
    GATEWAY,
    GENERATION_LIMIT,
    HEARTBEAT,
    MARGIN,
    assert_paid_once_and_delivered_once,
    delivered,
    jobs_logged,
    queue_empty,
)
from flick.testing.workers import HELD, Workers

UID = 7802
#: Longer than any test: a held request is answered only when its client is gone.
FOREVER = 3600.0


@dataclass(frozen=True)
class Fakes:
    openai: FakeOpenAI
    replicate: FakeReplicate


@dataclass(frozen=True)
class Step:
    """Where the kill falls: the row's status there, how the step is held (at a fake, before
    the generation starts, or at the worker's fault `point`), how to see it is held, and how
    to let the next worker through. `edits` and `downloads`: the statuses OpenAI's images.edit
    and Replicate's output download answered in all (0: the killed worker's, never answered)."""

    status: str
    hold: Callable[[Fakes], None]
    held: Callable[[Fakes, dict[str, Any]], bool]
    release: Callable[[Fakes], None]
    edits: list[int]
    downloads: list[int]
    point: str | None = None


def _nothing(f: Fakes) -> None:
    pass


def _hold_image(f: Fakes) -> None:
    f.openai.latency = FOREVER


def _release_image(f: Fakes) -> None:
    f.openai.latency = 0


def _hold_download(f: Fakes) -> None:
    f.replicate.script("output", Fault.latency(FOREVER))  # the first download only


STEPS = {
    "composing": Step(
        "composing",
        _hold_image,
        lambda f, row: [c.finished for c in f.openai.calls("images.edit")] == [None],
        _release_image,
        edits=[0, 200],  # composed again: the one step paid twice (see the module's doc)
        downloads=[200],
    ),
    "fetching_the_video": Step(
        "animating",  # the video is downloaded before the point of no return
        _hold_download,
        lambda f, row: [c.finished for c in f.replicate.calls("output")] == [None],
        _nothing,
        edits=[200],
        downloads=[0, 200],
    ),
    "storing_the_video": Step(
        "delivering",
        _nothing,
        lambda f, row: row["video_key"] is None,
        _nothing,
        edits=[200],
        downloads=[200, 200],  # the local copy died with the worker: fetched again, not paid
        point="store_video",
    ),
    "handing_back": Step(
        "delivering",
        _nothing,
        lambda f, row: row["video_key"] is not None,
        _nothing,
        edits=[200],
        downloads=[200],
        point="hand_back",
    ),
}


@pytest.mark.parametrize("step", list(STEPS.values()), ids=list(STEPS))
async def test_a_worker_killed_in_this_step_is_finished_by_another_once(
    step: Step,
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fakes = Fakes(fake_openai, fake_replicate)
    step.hold(fakes)
    h = await harness(**GATEWAY)
    killed = await workers.start("killed", hold=step.point)
    gen_id = await gen.start_generation(h, UID)

    async def in_step() -> bool:
        row = await gen.generation(gen_id)
        assert row["status"] in ("queued", "composing", "animating", "delivering"), row
        at_point = step.point is None or killed.find(f"{HELD} {step.point}: generation {gen_id}")
        return bool(row["status"] == step.status and at_point is not None and step.held(fakes, row))

    await gen.wait_for(in_step, f"generation {gen_id} held {step.status}", GENERATION_LIMIT)
    heir = await workers.start("heir")
    parked = await gen.generation(gen_id)
    await killed.kill()
    at = time.monotonic()
    step.release(fakes)

    await until(
        lambda: workers.taken_by(gen_id) == ["killed", "heir"],
        f"the heir took generation {gen_id} over",
        HEARTBEAT + MARGIN,
    )
    await delivered(h, gen, gen_id, UID)
    print(f"{step.status}: delivered {time.monotonic() - at:.2f} s after the SIGKILL")

    await assert_paid_once_and_delivered_once(h, gen, gen_id, fake_replicate, UID)
    row = await gen.generation(gen_id)
    assert (parked["status"], parked["refunded"]) == (step.status, False)
    if parked["prediction_id"] is not None:
        assert row["prediction_id"] == parked["prediction_id"]  # adopted, not made again
    if parked["video_key"] is not None:
        assert row["video_key"] == parked["video_key"]  # sent from the killed worker's copy
    assert [c.status for c in fake_openai.calls("images.edit")] == step.edits
    assert [c.status for c in fake_replicate.calls("output")] == step.downloads
    # Handed back once, by the heir; the killed worker's job was its job, taken over.
    assert killed.find(f"generation {gen_id}: handed back") is None
    assert heir.find(f"generation {gen_id}: handed back") is not None
    assert (await jobs_logged(gen, "generate"), await jobs_logged(gen, "settle")) == (1, 1)
    await until(lambda: queue_empty(gen), "every job ended", GENERATION_LIMIT)
