"""A generation that fails after its credit was taken gives the credit back, once, and says why;
a user who blocked the bot is not written to, and nothing breaks."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from flick.errors import FinalError, TransientError
from flick.fsm.conversation import State
from flick.i18n import t
from flick.models.db import pool
from flick.pipeline.runner import PipelineConfig
from flick.ports import ComposedImage
from flick.testing.engine_tools import EngineTools
from flick.testing.harnesses import HarnessFactory, VideoFactory

UID = 1201


class RefusingImage:
    """An ImageProvider that fails every call the way a real provider can."""

    name = "refusing"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def compose(self, photos: Sequence[bytes], prompt: str, style: str) -> ComposedImage:
        self.calls += 1
        raise self.error

    async def check(self) -> None:
        return None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            FinalError(
                "blocked by moderation", kind="moderation_blocked", user_reason="moderation"
            ),
            "moderation",
        ),
        (TransientError("503 from the provider", kind="server_error", retry_after=0.05), "timeout"),
        (RuntimeError("a bug in a provider"), "generic"),
    ],
    ids=["final", "transient-until-the-budget-ends", "unexpected"],
)
async def test_a_failed_generation_is_refunded_once_and_explained(
    harness: HarnessFactory, tools: EngineTools, error: Exception, reason: str
) -> None:
    image = RefusingImage(error)
    h = await harness(
        image=image,
        pipeline=PipelineConfig(
            poll_interval=0.02, compose_budget=0.3, animate_budget=5, deliver_budget=5
        ),
    )
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle()

    assert image.calls >= 1
    said = tools.texts(h, UID)[-1]
    assert said == t("en", f"failed_{reason}", n=1)
    row = await pool().fetchrow("SELECT status, refunded, error_class FROM generations")
    assert (row["status"], row["refunded"]) == ("failed", True)
    assert row["error_class"]
    assert [r["reason"] for r in await tools.ledger(UID)] == ["free", "generation", "refund"]
    assert await h.balance(UID) == 1 == await h.ledger_sum(UID)
    assert (await tools.saved(UID))[0] == State.IDLE.value
    assert tools.calls(h, "send_video", UID) == []
    # The apology carries a "Make another" button; it starts over, the credit is there to spend.
    apology = next(m for m in h.outbox.to(UID) if m.text == said)
    assert apology.buttons() == [(t("en", "button_another"), "create")]
    await h.press(UID, "create")
    await h.settle()
    assert (await tools.saved(UID))[0] == State.CHOOSING_STYLE.value


async def test_a_user_who_blocked_the_bot_is_left_alone(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    video = video_factory()
    video.gate.clear()
    h = await harness(video=video)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle(generations=False)
    h.outbox.blocked.add(UID)  # they block the bot while the video renders
    sent_before = len(h.outbox.to(UID))
    video.gate.set()
    await h.settle()

    assert len(h.outbox.to(UID)) == sent_before  # nothing reached them
    assert await pool().fetchval("SELECT status FROM generations") == "done"
    assert h.app.supervisor.crashes == 0
    assert await h.balance(UID) == 0  # the video was made: the credit stays spent

    h.outbox.blocked.discard(UID)  # they unblock and write again: the video is still theirs
    await h.command(UID, "history")
    await h.settle()
    history = h.outbox.to(UID)[-1]
    assert history.text.startswith(t("en", "history_title"))
    gen_id = await pool().fetchval("SELECT id FROM generations")
    await h.press(UID, f"video:{gen_id}")
    await h.settle()
    again = tools.calls(h, "send_video", UID)
    assert len(again) == 1 and again[0].extra["key"].startswith(f"videos/{UID}/")


async def test_replies_to_a_user_who_blocked_the_bot_mark_them_blocked(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "start")
    await h.settle()
    h.outbox.blocked.add(UID)
    await h.command(UID, "help")  # an update still arrives (say, it was sent before blocking)
    await h.settle()
    assert await pool().fetchval("SELECT blocked FROM users WHERE telegram_id = $1", UID)
    assert h.app.supervisor.crashes == 0
    h.outbox.blocked.discard(UID)
    await h.command(UID, "balance")  # writing again means they unblocked the bot
    await h.settle()
    assert not await pool().fetchval("SELECT blocked FROM users WHERE telegram_id = $1", UID)
    assert tools.texts(h, UID)[-1] == t("en", "balance", n=1)


async def test_a_provider_error_echoing_a_key_is_stored_redacted(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    key = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
    image = RefusingImage(
        FinalError(f"Incorrect API key provided: {key}", kind="auth", user_reason="generic")
    )
    h = await harness(image=image)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle()
    stored = await pool().fetchval("SELECT error_message FROM generations")
    assert stored.startswith("Incorrect API key provided:")
    assert key not in stored and key[:12] not in stored
