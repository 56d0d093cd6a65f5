"""/cancel while a video renders: the prediction is canceled at Replicate, the credit comes back
exactly once, and the user is at IDLE."""

from __future__ import annotations

import asyncio

from flick.actors import messages as msg
from flick.errors import FinalError
from flick.fsm.conversation import State
from flick.ports import Keyboard
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import HarnessFactory
from flick.testing.memory import RecordingOutbox

UID = 7201


async def test_cancel_during_a_prediction_cancels_it_and_refunds_once(
    harness: HarnessFactory,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
) -> None:
    fake_replicate.run_time = 3600  # it would render for an hour
    h = await harness()
    gen_id = await gen.start_generation(h, UID)
    pid = await gen.wait_for_prediction(gen_id)
    assert await h.balance(UID) == 0

    await h.command(UID, "cancel")
    await h.settle()

    # Replicate was told to stop: that prediction is no longer billed.
    assert [c.path for c in fake_replicate.calls("predictions.cancel")] == [
        f"/v1/predictions/{pid}/cancel"
    ]
    assert fake_replicate.predictions[pid].canceled_at is not None
    assert fake_replicate.predictions_created == 1
    # Refunded once; the row says canceled; the user is idle and told so.
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"], row["error_class"]) == ("canceled", True, "canceled")
    assert await h.balance(UID) == 1
    assert await gen.ledger(UID) == [
        ("free", 1, 1, None),
        ("generation", -1, 0, gen_id),
        ("refund", 1, 1, gen_id),
    ]
    assert gen.t("en", "canceled_refunded", balance=1) in gen.sent_texts(h, UID)
    assert gen.actor_state(h, UID) is State.IDLE
    assert await gen.session_state(UID) == State.IDLE.value
    assert gen.videos(h, UID) == []

    # A late report that the generation failed (a race with the task) refunds nothing more.
    before = list(h.outbox.sent)
    h.app.supervisor.post(UID, msg.GenerationEnded(gen_id, FinalError("late", kind="late")))
    await h.settle()
    assert await h.balance(UID) == 1
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation", "refund"]
    assert h.outbox.sent == before  # and says nothing
    assert (await gen.generation(gen_id))["error_class"] == "canceled"

    # A second /cancel has nothing to cancel; the credit can be spent again.
    await h.command(UID, "cancel")
    await h.settle()
    assert gen.sent_texts(h, UID)[-1] == gen.t("en", "nothing_to_cancel")
    fake_replicate.run_time = 0.1
    await h.make_video(UID)
    assert len(gen.videos(h, UID)) == 1
    assert await h.balance(UID) == 0


async def test_cancel_while_composing_refunds_once(
    harness: HarnessFactory, gen: GenerationTools, fake_openai: FakeOpenAI
) -> None:
    """/cancel while the image model works: nothing reaches Replicate, one refund."""
    fake_openai.latency = 3600
    h = await harness()
    gen_id = await gen.start_generation(h, UID)

    async def composing() -> bool:
        return fake_openai.in_flight == 1

    await gen.wait_for(composing, "the image request is in flight")
    await h.command(UID, "cancel")
    await h.settle()
    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"]) == ("canceled", True)
    assert await h.balance(UID) == 1
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation", "refund"]
    assert gen.actor_state(h, UID) is State.IDLE


class SlowDoneOutbox(RecordingOutbox):
    """Telegram is slow to edit the status message to "done" (a flood wait, say)."""

    def __init__(self, done_text: str) -> None:
        super().__init__()
        self.done_text = done_text
        self.editing_done = asyncio.Event()
        self.release = asyncio.Event()

    async def edit_text(
        self, chat_id: int, message_id: int, text: str, keyboard: Keyboard | None = None
    ) -> None:
        if text == self.done_text:
            self.editing_done.set()
            await self.release.wait()
        await super().edit_text(chat_id, message_id, text, keyboard)


async def test_cancel_after_delivery_does_not_claim_a_refund(
    harness: HarnessFactory, gen: GenerationTools, fake_replicate: FakeReplicate
) -> None:
    h = await harness(outbox=SlowDoneOutbox(""))
    outbox = h.outbox
    assert isinstance(outbox, SlowDoneOutbox)
    outbox.done_text = gen.status_texts(h)["status_done"]
    gen_id = await gen.start_generation(h, UID)
    await asyncio.wait_for(outbox.editing_done.wait(), 20)
    # The video is out and the row is done, but the generation task has not reported yet.
    assert len(gen.videos(h, UID)) == 1
    assert (await gen.generation(gen_id))["status"] == "done"

    await h.command(UID, "cancel")
    await h.settle(generations=False)
    outbox.release.set()
    await h.settle()

    assert await h.balance(UID) == 0  # the money is right...
    assert [r[0] for r in await gen.ledger(UID)] == ["free", "generation"]
    assert (await gen.generation(gen_id))["status"] == "done"
    # ...but the user must not be told that their credit is back.
    assert gen.t("en", "canceled_refunded", balance=0) not in gen.sent_texts(h, UID)
