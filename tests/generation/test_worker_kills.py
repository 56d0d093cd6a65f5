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

A worker frozen (SIGSTOP) mid-prediction is a zombie: its job is taken over like a dead one's;
woken after the video was delivered, it must neither send nor hand back anything again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flick.storage import S3Storage
from flick.testing.children import Child
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
#: The issue's promise: a killed worker's generation is delivered within this of the kill.
FINISHED_WITHIN = 60.0


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
    """Killed in the step, the worker's generation is taken over and delivered within a minute
    of the kill, nobody acting. Killed while composing, the picture is composed once more, and
    that one more is paid for: the killed request may have made (and billed) a picture, which no
    one can find again (OpenAI's images API takes no idempotency key); never a third."""
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
    await delivered(h, gen, gen_id, UID, limit=FINISHED_WITHIN - (time.monotonic() - at))
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


def _woken(zombie: Child, gen_id: int) -> str:
    return "\n".join(line for line in zombie.lines if f"generation {gen_id}" in line)


async def test_a_zombie_worker_woken_after_delivery_told_the_user_canceled_and_handed_back_again(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    """The bug: a worker frozen mid-prediction (SIGSTOP) is taken over after its heartbeat; the
    heir's video is delivered; woken, the zombie fetched the video, found the generation done
    (its `deliver` refused) and took that for a /cancel: it relayed "cancelled (your credit is
    back)", which the gateway edited into the user's status message under the delivered video
    (no credit came back), and it handed the generation back a second time (a second `settle`
    job). Now a run that finds its generation taken shows no line and hands nothing back."""
    fake_replicate.run_time = FOREVER  # the prediction stays `processing` until released
    h = await harness(**GATEWAY)
    zombie = await workers.start("zombie")
    gen_id = await gen.start_generation(h, UID)
    pid = await gen.wait_for_prediction(gen_id, GENERATION_LIMIT)
    await until(lambda: workers.taken_by(gen_id) == ["zombie"], "the zombie took the job")
    heir = await workers.start("heir")
    zombie.pause()  # SIGSTOP: no heartbeat, no poll, but alive, its connections open

    await until(
        lambda: workers.taken_by(gen_id) == ["zombie", "heir"],
        f"the heir took generation {gen_id} over",
        HEARTBEAT + MARGIN,
    )
    for prediction in fake_replicate.predictions.values():
        prediction.run_time = 0  # it succeeds now
    await delivered(h, gen, gen_id, UID)
    await heir.said(f"generation {gen_id}: handed back")
    await until(lambda: queue_empty(gen), "the heir's jobs ended", GENERATION_LIMIT)
    before = await gen.generation(gen_id)
    sent = list(h.outbox.to(UID))
    downloads = len(fake_replicate.calls("output"))

    zombie.resume()  # SIGCONT: it runs on from its poll, its timers long overdue
    # Its run goes on to its end: the prediction succeeded, its video is fetched, and the step
    # that follows finds the generation done by another.
    await zombie.said(f"generation {gen_id}: ended elsewhere, nothing handed back")
    await until(lambda: queue_empty(gen), "the zombie's jobs ended", GENERATION_LIMIT)
    await h.settle()
    assert len(fake_replicate.calls("output")) == downloads + 1, _woken(zombie, gen_id)

    row = await gen.generation(gen_id)
    assert row == before  # nothing overwritten
    assert (row["status"], row["prediction_id"]) == ("done", pid)
    await assert_paid_once_and_delivered_once(h, gen, gen_id, fake_replicate, UID)
    assert h.outbox.to(UID) == sent  # no second video, no status edited after the end
    assert gen.status_messages(h, UID)[-1].text == gen.status_texts(h)["status_done"]
    assert zombie.find(f"generation {gen_id}: handed back") is None
    assert [c.status for c in fake_openai.calls("images.edit")] == [200]
    assert fake_replicate.calls("predictions.cancel") == []
    # The zombie handed nothing back: one settle job in all, the heir's.
    assert (await jobs_logged(gen, "generate"), await jobs_logged(gen, "settle")) == (1, 1), _woken(
        zombie, gen_id
    )


async def test_a_zombie_worker_woken_while_storing_overwrote_the_delivered_video_key(
    storage: S3Storage,
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    """The bug: a worker frozen at its S3 copy (the generation `delivering`, its video fetched)
    is taken over; the heir fetches the video again, stores it and the gateway delivers it.
    Woken, the zombie stored its own copy and wrote its key over the delivered one's on the
    `done` row (an unconditional save), then handed the generation back a second time. Now the
    key is saved only on a `delivering` row without one: the zombie's copy is deleted, and its
    run ends as taken over, handing nothing back."""
    h = await harness(**GATEWAY)
    zombie = await workers.start("zombie", hold="store_video", freeze=True)
    gen_id = await gen.start_generation(h, UID)
    await zombie.said(f"{HELD} store_video: generation {gen_id}")  # and it stopped itself
    heir = await workers.start("heir")
    await until(
        lambda: workers.taken_by(gen_id) == ["zombie", "heir"],
        f"the heir took generation {gen_id} over",
        HEARTBEAT + MARGIN,
    )
    await delivered(h, gen, gen_id, UID)
    await heir.said(f"generation {gen_id}: handed back")
    await until(lambda: queue_empty(gen), "the heir's jobs ended", GENERATION_LIMIT)
    before = await gen.generation(gen_id)
    sent = list(h.outbox.to(UID))

    zombie.resume()
    await zombie.said(f"generation {gen_id}: ended elsewhere, nothing handed back")
    await until(lambda: queue_empty(gen), "the zombie's jobs ended", GENERATION_LIMIT)
    await h.settle()

    row = await gen.generation(gen_id)
    assert row == before, _woken(zombie, gen_id)  # the delivered video's key kept
    await assert_paid_once_and_delivered_once(h, gen, gen_id, fake_replicate, UID)
    assert h.outbox.to(UID) == sent
    assert [c.status for c in fake_openai.calls("images.edit")] == [200]
    assert [c.status for c in fake_replicate.calls("output")] == [200, 200]  # the heir's again
    assert zombie.find(f"generation {gen_id}: handed back") is None
    assert (await jobs_logged(gen, "generate"), await jobs_logged(gen, "settle")) == (1, 1)
    # The zombie's copy went: the bucket holds the delivered video alone.
    assert [key async for key in storage.keys("videos/")] == [row["video_key"]]
