"""Flick SIGKILLed in each step of each route, then started again on the same database and bucket:
the generation is delivered once, from one prediction, for one charge, and nothing is refunded.

Flick runs as a real process (flick.testing.killable); the fake OpenAI and Replicate run here, so
the test holds a step for as long as it likes (an image request left unanswered, a prediction
kept `processing`, a create accepted but its answer withheld, Telegram's upload held), sees the
step in the generations table and at the fake, kills, releases, and starts a new process.

A compose killed mid-request is asked again: the killed request was never answered, so no image
reached Flick, and Flick cannot know whether OpenAI finished it (the runner's "each step first
looks at what the record holds": only a stored picture is reused). Every other step pays nothing
again: the prediction saved (or found by its inputs when its id was never heard) is polled, and
a video already in storage is sent from there. The in-process stops of the same steps are in
test_resume.py, test_lost_prediction.py, test_delivery.py and test_routes_resume.py.

`queued` is no case: a generation leaves it in the runner's first step, before any call to a
provider or Telegram, so nothing outside the process can hold it there; a kill in it is a kill
before composing (compose_animate) or before the create (direct), both covered by the resume
of an unstarted step.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flick.embedded import EmbeddedSeaweed
from flick.storage import S3Storage
from flick.testing.direct_style import KLING, styles_file
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate, Fault
from flick.testing.flick_child import ChildConfig
from flick.testing.generation_tools import GenerationTools
from flick.testing.killable import FlickProcess, Killable

UID = 7901
STYLE = {"compose_animate": "hug", "direct": "together"}


@dataclass(frozen=True)
class Fakes:
    openai: FakeOpenAI
    replicate: FakeReplicate


@dataclass(frozen=True)
class Step:
    """Where the kill falls: how to hold the generation there, how to see it is there (the
    generation's row and the fakes), and how to let it go on once the process is dead."""

    status: str
    how: str  # how it is held, for the case's name
    hold: Callable[[Fakes], None]
    reached: Callable[[Fakes, dict[str, Any], FlickProcess], bool]
    release: Callable[[Fakes], None]
    hold_delivery: bool = False


def _hold_image(f: Fakes) -> None:
    f.openai.latency = 3600  # the image request is never answered


def _release_image(f: Fakes) -> None:
    f.openai.latency = 0


def _hold_prediction(f: Fakes) -> None:
    f.replicate.run_time = 3600


def _release_prediction(f: Fakes) -> None:
    for prediction in f.replicate.predictions.values():
        prediction.run_time = 0  # it succeeds now


def _hold_create_reply(f: Fakes) -> None:
    # Replicate creates (and bills) the prediction; its answer never reaches Flick.
    f.replicate.script("predictions.create", Fault.lost_reply(hold=3600))


def _nothing(f: Fakes) -> None:
    pass


COMPOSING = Step(
    "composing",
    "image_request_unanswered",
    _hold_image,
    lambda f, row, p: [c.finished for c in f.openai.calls("images.edit")] == [None],
    _release_image,
)
PREDICTION_RUNNING = Step(
    "animating",
    "prediction_processing",
    _hold_prediction,
    lambda f, row, p: (
        bool(row["prediction_id"])
        and f.replicate.predictions[row["prediction_id"]].status(time.monotonic()) == "processing"
    ),
    _release_prediction,
)
CREATE_UNANSWERED = Step(
    "animating",
    "create_accepted_answer_lost",
    _hold_create_reply,
    lambda f, row, p: (
        f.replicate.predictions_created == 1 and row["prediction_requested_at"] is not None
    ),
    _nothing,
)
UPLOADING = Step(
    "delivering",
    "upload_in_flight",
    _nothing,
    lambda f, row, p: row["video_key"] is not None and bool(p.named("uploading")),
    _nothing,
    hold_delivery=True,
)

CASES = [
    pytest.param(route, step, id=f"{route}-{step.status}-{step.how}")
    for route, step in [
        ("compose_animate", COMPOSING),
        ("compose_animate", PREDICTION_RUNNING),
        ("compose_animate", CREATE_UNANSWERED),
        ("compose_animate", UPLOADING),
        ("direct", PREDICTION_RUNNING),
        ("direct", CREATE_UNANSWERED),
        ("direct", UPLOADING),
    ]
]


@pytest.fixture
async def flicks(
    database_url: str,
    seaweed: EmbeddedSeaweed,
    storage: S3Storage,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
) -> AsyncIterator[Killable]:
    await storage.put("warm-up", b"warm", "text/plain")  # the bucket's volumes, made once
    base = ChildConfig(
        socket="",
        database_url=database_url,
        s3_endpoint=storage.endpoint,
        s3_access_key=seaweed.access_key,
        s3_secret_key=seaweed.secret_key,
        s3_bucket=storage.bucket,
        openai_url=fake_openai.base_url,
        replicate_url=fake_replicate.base_url,
        data_dir=str(tmp_path),
        styles_file=str(styles_file(tmp_path / "styles.toml")),
    )
    killable = Killable(base)
    try:
        yield killable
    finally:
        await killable.close()


@pytest.mark.parametrize(("route", "step"), CASES)
async def test_flick_killed_in_this_step_delivers_once_from_one_prediction_for_one_charge(
    route: str,
    step: Step,
    flicks: Killable,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fakes = Fakes(fake_openai, fake_replicate)
    assert fake_replicate.models is not None  # the fixture's: only models named are served
    fake_replicate.models.add(KLING)
    step.hold(fakes)
    first = await flicks.start(
        fresh=True, start={"uid": UID, "style": STYLE[route]}, hold_delivery=step.hold_delivery
    )
    gen_id = int((await first.event("started"))["generation"])

    async def in_step() -> bool:
        row = await gen.generation(gen_id)
        assert row["status"] in ("queued", "composing", "animating", "delivering"), row
        return bool(row["status"] == step.status and step.reached(fakes, row, first))

    await gen.wait_for(in_step, f"generation {gen_id} is {step.status}, held there", 60)
    await first.kill()

    parked = await gen.generation(gen_id)
    assert (parked["status"], parked["route"], parked["refunded"]) == (step.status, route, False)
    step.release(fakes)
    second = await flicks.start()
    await second.event("video")

    async def done() -> bool:
        return bool((await gen.generation(gen_id))["status"] == "done")

    await gen.wait_for(done, f"generation {gen_id} is done", 60)
    row = await gen.generation(gen_id)
    # Delivered once: the killed process never got a video to Telegram, the new one sent one.
    assert first.named("video") == [] and len(second.named("video")) == 1
    assert second.named("video")[0]["key"] == row["video_key"]
    if step.hold_delivery:  # sent from storage, as stored before the kill
        assert row["video_key"] == parked["video_key"]
    # One prediction, created once: the saved one polled, or the orphan found by its inputs.
    assert fake_replicate.predictions_created == 1
    assert list(fake_replicate.predictions) == [row["prediction_id"]]
    assert len(fake_replicate.calls("predictions.create")) == 1
    if step is CREATE_UNANSWERED:
        assert parked["prediction_id"] is None  # its id was never heard: found, not made again
    elif step is not COMPOSING:
        assert parked["prediction_id"] == row["prediction_id"]
    # The picture: asked of OpenAI once per compose route, a second time only when the kill
    # fell on the unanswered request; one answer in all. A direct route never composes.
    answered = [c.status for c in fake_openai.calls("images.edit")]
    if route == "direct":
        assert answered == [] and row["combined_key"] is None
    elif step is COMPOSING:
        assert answered == [0, 200]  # 0: never answered (the process died waiting)
    else:
        assert answered == [200]
    # One charge, never refunded.
    assert (row["refunded"], row["charged"]) == (False, 1)
    assert await gen.ledger(UID) == [("free", 5, 5, None), ("generation", -1, 4, gen_id)]
    balance = await gen.pool().fetchval("SELECT balance FROM users WHERE telegram_id = $1", UID)
    assert balance == 4
