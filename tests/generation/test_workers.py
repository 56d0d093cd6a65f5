"""`flick worker` processes make the videos; the gateway (the engine harness, which takes no
`generate` job: GATEWAY_GENERATES=false) sends them, refunds their failures and relays /cancel.

Each worker is a real `python -m flick worker` child (flick.testing.workers) on the test's
PostgreSQL and bucket, its real OpenAI and Replicate SDKs talking to the fakes in this process,
so the test holds a prediction `processing` for as long as it likes and reads what each provider
was asked. The workers and the gateway beat every HEARTBEAT seconds: a SIGKILLed worker's job is
taken by another once its heartbeat is that old (flick.testing.worker_checks). A worker killed
in each other step, and one frozen and woken after its job was taken: test_worker_kills.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from flick.fsm.conversation import State
from flick.settings import Settings
from flick.testing.direct_style import styles_file
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
from flick.testing.workers import REFUSED, Workers

UID = 7801


async def test_a_worker_makes_the_video_and_the_gateway_delivers_it(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    h = await harness(**GATEWAY)
    worker = await workers.start("w1")
    started = time.monotonic()
    gen_id = await gen.start_generation(h, UID)
    await delivered(h, gen, gen_id, UID)
    print(f"generation on a worker, delivered by the gateway: {time.monotonic() - started:.2f} s")

    assert workers.taken_by(gen_id) == ["w1"]
    assert (await jobs_logged(gen, "generate"), await jobs_logged(gen, "settle")) == (1, 1)
    assert worker.find(f"generation {gen_id}: handed back") is not None
    assert h.app.supervisor.generations_running == 0  # the gateway ran no step of it
    await assert_paid_once_and_delivered_once(h, gen, gen_id, fake_replicate, UID)
    assert [c.status for c in fake_openai.calls("images.edit")] == [200]
    assert gen.actor_state(h, UID) in (State.IDLE, None)
    # The worker's progress reached the user through the gateway (NOTIFY): one status message,
    # sent once and edited as the generation moved, as when the gateway runs it itself.
    texts = gen.status_texts(h)
    status = gen.status_messages(h, UID)
    assert [(s.method, s.text) for s in status] == [
        ("send_text", texts["status_composing"]),
        ("edit_text", texts["status_animating"]),
        ("edit_text", texts["status_sending"]),
        ("edit_text", texts["status_done"]),
    ]
    assert {s.extra["edits"] for s in status[1:]} == {status[0].message_id}


async def test_a_worker_killed_mid_prediction_is_taken_over_by_another(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.run_time = 3600  # the prediction stays `processing` until released
    h = await harness(**GATEWAY)
    await asyncio.gather(workers.start("w1"), workers.start("w2"))
    gen_id = await gen.start_generation(h, UID)
    pid = await gen.wait_for_prediction(gen_id, GENERATION_LIMIT)
    await until(lambda: len(workers.taken_by(gen_id)) == 1, "a worker said it took the job")
    (first,) = workers.taken_by(gen_id)
    (second,) = {"w1", "w2"} - {first}
    await workers.children[first].kill()
    killed = time.monotonic()
    for prediction in fake_replicate.predictions.values():
        prediction.run_time = 0  # it succeeds now

    await until(
        lambda: len(workers.taken_by(gen_id)) == 2,
        f"{second} took generation {gen_id} over",
        HEARTBEAT + MARGIN,
    )
    takeover = time.monotonic() - killed
    await delivered(h, gen, gen_id, UID)
    print(
        f"taken over {takeover:.2f} s after the SIGKILL (heartbeat {HEARTBEAT} s), "
        f"delivered {time.monotonic() - killed:.2f} s after it"
    )

    # The running prediction was adopted, not paid for again; the picture was not made again.
    assert (await gen.generation(gen_id))["prediction_id"] == pid
    await assert_paid_once_and_delivered_once(h, gen, gen_id, fake_replicate, UID)
    assert [c.status for c in fake_openai.calls("images.edit")] == [200]
    assert workers.children[second].find(f"generation {gen_id}: handed back") is not None


async def test_a_worker_stopped_mid_prediction_hands_its_job_over_at_once(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    """SIGTERM (a deploy): the worker parks the generation and hands its job back, so the other
    takes it without waiting for a heartbeat to go stale (a minute here)."""
    fake_replicate.run_time = 3600
    h = await harness(**GATEWAY)
    leaving = await workers.start("leaving", WORK_HEARTBEAT_SECONDS="60")
    gen_id = await gen.start_generation(h, UID)
    pid = await gen.wait_for_prediction(gen_id, GENERATION_LIMIT)
    await workers.start("staying", WORK_HEARTBEAT_SECONDS="60")
    leaving.proc.terminate()
    assert await leaving.proc.wait() == 0
    stopped = time.monotonic()
    for prediction in fake_replicate.predictions.values():
        prediction.run_time = 0

    await until(
        lambda: workers.taken_by(gen_id) == ["leaving", "staying"],
        f"the staying worker took generation {gen_id}",
        30.0,  # half the heartbeat: handed over, not found stale
    )
    print(f"taken over {time.monotonic() - stopped:.2f} s after the stop (heartbeat 60 s)")
    await delivered(h, gen, gen_id, UID)
    assert leaving.find(f"generation {gen_id}: handed back") is None  # parked, not ended
    assert (await gen.generation(gen_id))["prediction_id"] == pid
    await assert_paid_once_and_delivered_once(h, gen, gen_id, fake_replicate, UID)
    assert [c.status for c in fake_openai.calls("images.edit")] == [200]
    assert fake_replicate.calls("predictions.cancel") == []  # parked, not canceled


async def test_a_worker_of_another_configuration_takes_no_job(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
) -> None:
    h = await harness(**GATEWAY)
    # A styles file with one style more than the gateway's: another configuration version.
    other = await workers.start("other", STYLES_FILE=str(styles_file(tmp_path / "other.toml")))
    assert other.find("this worker's configuration is") is not None  # said at its start
    gen_id = await gen.start_generation(h, UID)
    await other.said(REFUSED)  # the job was offered to it, and it left it

    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"]) == ("queued", False)
    assert fake_openai.requests == [] and fake_replicate.requests == []
    assert workers.taken_by(gen_id) == []
    other.proc.terminate()  # a clean stop: it holds no job
    assert await other.proc.wait() == 0

    started = time.monotonic()
    await workers.start("matching")
    await delivered(h, gen, gen_id, UID)
    print(f"the matching worker delivered {time.monotonic() - started:.2f} s after its start")
    assert workers.taken_by(gen_id) == ["matching"]
    await assert_paid_once_and_delivered_once(h, gen, gen_id, fake_replicate, UID)


async def test_a_failure_on_a_worker_is_refunded_once_by_the_gateway(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.script(
        "predictions.create",
        Fault.status(422, message="input.resolution: must be one of 480p, 720p"),
    )
    h = await harness(**GATEWAY)
    worker = await workers.start("w1")
    gen_id = await gen.start_generation(h, UID)

    async def failed() -> bool:
        return bool((await gen.generation(gen_id))["refunded"])

    await until(failed, f"generation {gen_id} refunded", GENERATION_LIMIT)
    await h.settle()

    row = await gen.generation(gen_id)
    assert (row["status"], row["error_class"], row["video_key"]) == (
        "failed",
        "invalid_request",
        None,
    )
    assert worker.find(f"generation {gen_id}: handed back") is not None
    assert await gen.ledger(UID) == [
        ("free", 1, 1, None),
        ("generation", -1, 0, gen_id),
        ("refund", 1, 1, gen_id),
    ]
    assert await h.balance(UID) == 1
    told = [s for s in h.outbox.to(UID) if s.text == gen.t("en", "failed_generic", n=1)]
    assert len(told) == 1, gen.sent_texts(h, UID)
    assert gen.videos(h, UID) == []
    assert fake_replicate.predictions_created == 0
    assert await gen.session_state(UID) == State.IDLE.value


async def test_cancel_while_a_worker_animates_cancels_its_prediction_and_refunds_once(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.run_time = 3600
    h = await harness(**GATEWAY)
    worker = await workers.start("w1")
    gen_id = await gen.start_generation(h, UID)
    pid = await gen.wait_for_prediction(gen_id, GENERATION_LIMIT)

    await h.command(UID, "cancel")
    await h.settle()
    # The gateway's /cancel reached the worker (NOTIFY): it canceled its prediction.
    await until(
        lambda: bool(fake_replicate.calls("predictions.cancel")),
        "the worker canceled its prediction",
        GENERATION_LIMIT,
    )
    assert [c.path for c in fake_replicate.calls("predictions.cancel")] == [
        f"/v1/predictions/{pid}/cancel"
    ]
    assert fake_replicate.predictions[pid].canceled_at is not None
    await worker.said(f"generation {gen_id}: handed back")  # its job ended
    await h.settle()

    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"], row["error_class"]) == ("canceled", True, "canceled")
    assert await gen.ledger(UID) == [
        ("free", 1, 1, None),
        ("generation", -1, 0, gen_id),
        ("refund", 1, 1, gen_id),
    ]
    assert await h.balance(UID) == 1
    assert gen.t("en", "canceled_refunded", balance=1) in gen.sent_texts(h, UID)
    assert gen.videos(h, UID) == []
    assert fake_replicate.predictions_created == 1
    # Its job ended and no settle job was handed back: nothing will send or refund it later.
    await until(lambda: queue_empty(gen), "the worker's job ended", GENERATION_LIMIT)
    assert await jobs_logged(gen, "settle") == 0


async def test_cancel_while_no_worker_runs_refunds_once_and_a_later_worker_pays_nothing(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    """The job waits in the queue (the gateway takes none); /cancel refunds and withdraws it;
    the worker that comes later has nothing to take and calls no provider."""
    h = await harness(**GATEWAY)
    gen_id = await gen.start_generation(h, UID)
    await h.command(UID, "cancel")
    await h.settle()
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"]) == ("canceled", True)
    assert await h.balance(UID) == 1

    assert await queue_empty(gen)  # the refund withdrew the waiting job
    worker = await workers.start("late")
    assert worker.find(f"generation {gen_id}: taken") is None  # nothing left to take
    assert fake_openai.requests == [] and fake_replicate.requests == []
    assert await gen.ledger(UID) == [
        ("free", 1, 1, None),
        ("generation", -1, 0, gen_id),
        ("refund", 1, 1, gen_id),
    ]
    assert await jobs_logged(gen, "settle") == 0
    assert gen.videos(h, UID) == []


async def test_a_worker_of_another_configuration_delayed_the_jobs_it_refused(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
) -> None:
    """The bug: a refused job was put back 10 s in the future, and the stale worker, still
    taking every job it could, kept refusing (and delaying) them beside the matching workers
    (a rolling deploy: 0 to 40 s more per video, measured with two stale workers). Now the job
    goes back at once and the stale worker takes no more until its configuration is in force."""
    h = await harness(**GATEWAY, free_credits=3)
    other = await workers.start("other", STYLES_FILE=str(styles_file(tmp_path / "other.toml")))
    first = await gen.start_generation(h, UID)
    await other.said(REFUSED)

    async def back_in_queue() -> bool:
        found = await gen.pool().fetchval(
            "SELECT count(*) FROM pgqueuer WHERE status = 'queued' AND attempts > 0"
        )
        return bool(found)

    await until(back_in_queue, "the refused job is queued again")
    due = await gen.pool().fetchval("SELECT execute_after <= now() FROM pgqueuer")
    assert due is True  # offered again at once, not 10 s later
    await workers.start("matching")
    await delivered(h, gen, first, UID)

    # Two more while the stale worker runs beside the matching one: it takes neither.
    made = [first]
    for _ in range(2):
        made.append(gen_id := await gen.start_generation(h, UID))
        await delivered(h, gen, gen_id, UID)
        assert workers.taken_by(gen_id) == ["matching"]
    assert made == [1, 2, 3]
    assert sum(REFUSED in line for line in other.lines) == 1
    assert fake_replicate.predictions_created == 3
    assert await h.balance(UID) == 0


async def test_a_worker_runs_at_most_worker_max_generations_and_another_takes_the_rest(
    harness: HarnessFactory,
    workers: Workers,
    gen: GenerationTools,
    fake_replicate: FakeReplicate,
) -> None:
    """Jobs handed over together go to workers by their room, not to whichever wakes first."""
    fake_replicate.run_time = 3600  # each generation holds its worker until released
    h = await harness(**GATEWAY)
    small = await workers.start("small", WORKER_MAX_GENERATIONS="2")
    assert small.find("worker_max_generations=2") is not None
    users = [UID + 10 + i for i in range(3)]
    gen_ids = [await gen.start_generation(h, uid) for uid in users]
    await until(
        lambda: sum(workers.taken_by(g) == ["small"] for g in gen_ids) == 2,
        "the small worker took two",
        GENERATION_LIMIT,
    )
    # Had it no bound, it would have taken the third too by now: it dequeues within a second
    # of a hand-over, and another worker takes seconds to start.
    await workers.start("other")
    waiting = [g for g in gen_ids if not workers.taken_by(g)]
    assert len(waiting) == 1, "the small worker took a third generation"
    (third,) = waiting
    await until(lambda: workers.taken_by(third) == ["other"], "the other worker took the third")
    for prediction in fake_replicate.predictions.values():
        prediction.run_time = 0
    fake_replicate.run_time = 0
    for gen_id, uid in zip(gen_ids, users, strict=True):
        await delivered(h, gen, gen_id, uid)
    assert fake_replicate.predictions_created == 3
    assert sorted(len(workers.taken_by(g)) for g in gen_ids) == [1, 1, 1]


def test_worker_max_generations_of_one_is_refused_with_what_to_set() -> None:
    with pytest.raises(ValidationError, match="at least 2"):
        Settings(_env_file=None, worker_max_generations=1)  # type: ignore[call-arg]
    unbounded = Settings(_env_file=None, worker_max_generations=0)  # type: ignore[call-arg]
    assert unbounded.worker_max_generations == 0
