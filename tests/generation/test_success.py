"""A generation that works: two photos in, one composed picture, one prediction, one video out,
with the real openai and replicate SDKs talking to the fakes."""

from __future__ import annotations

import re
from dataclasses import replace

from flick.fsm.conversation import State
from flick.storage import S3Storage
from flick.testing.fake_openai import FakeOpenAI
from flick.testing.fake_replicate import FakeReplicate
from flick.testing.generation_tools import GenerationTools
from flick.testing.harnesses import HarnessFactory

UID = 7001
USD_PER_SECOND = 0.0125


async def test_a_video_is_delivered_and_everything_is_recorded(
    harness: HarnessFactory,
    gen: GenerationTools,
    fake_openai: FakeOpenAI,
    fake_replicate: FakeReplicate,
    storage: S3Storage,
) -> None:
    h = await harness(pipeline=replace(gen.FAST, usd_per_second=USD_PER_SECOND))
    await h.make_video(UID, "kiss")

    # Delivered, once, with the video we stored.
    sent = gen.videos(h, UID)
    assert len(sent) == 1
    assert sent[0].text == gen.t("en", "video_caption", style=gen.label(h, "kiss"))
    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert row["status"] == "done"
    assert row["refunded"] is False and row["error_class"] is None
    assert re.fullmatch(rf"combined/{UID}/\d{{8}}T\d{{9}}_kiss\.jpg", row["combined_key"])
    assert re.fullmatch(rf"videos/{UID}/\d{{8}}T\d{{9}}_kiss\.mp4", row["video_key"])
    assert sent[0].extra["key"] == row["video_key"]
    assert row["video_file_id"] == f"video-{row['video_key']}"

    # Both files are in our storage: a JPEG and a real MP4 (copied from the provider's output).
    combined = await storage.get(row["combined_key"])
    assert combined.startswith(b"\xff\xd8\xff")
    video = await storage.get(row["video_key"])
    assert video[4:8] == b"ftyp"

    # The providers were each paid once, and what they cost is on the row.
    edits = fake_openai.calls("images.edit")
    assert len(edits) == 1
    assert edits[0].form["prompt"] == [h.app.supervisor.ctx.styles["kiss"].image_prompt]
    assert len(edits[0].files.get("image[]", []) + edits[0].files.get("image", [])) == 2
    assert fake_replicate.predictions_created == 1
    (prediction,) = fake_replicate.predictions.values()
    assert row["prediction_id"] == prediction.id
    assert prediction.model == gen.VIDEO_MODEL
    assert prediction.input["image"].startswith("data:image/jpeg;base64,")
    assert prediction.input["prompt"] == h.app.supervisor.ctx.styles["kiss"].video_prompt
    assert prediction.canceled_at is None

    usage = row["image_usage"]
    assert usage["provider"] == "openai" and usage["model"] == "gpt-image-1"
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert row["predict_seconds"] is not None and row["predict_seconds"] > 0
    assert row["cost_usd"] == row["predict_seconds"] * USD_PER_SECOND
    assert row["image_provider"] == "openai" and row["video_provider"] == "replicate"

    # One credit spent, and the ledger explains the balance.
    assert await h.balance(UID) == 0
    assert await gen.ledger(UID) == [("free", 1, 1, None), ("generation", -1, 0, gen_id)]
    assert await h.ledger_sum(UID) == 0
    assert await gen.session_state(UID) == State.IDLE.value

    # One status message, sent once and edited as the generation moved.
    texts = gen.status_texts(h, "kiss")
    status = gen.status_messages(h, UID, "kiss")
    assert [(s.method, s.text) for s in status] == [
        ("send_text", texts["status_composing"]),
        ("edit_text", texts["status_animating"]),
        ("edit_text", texts["status_sending"]),
        ("edit_text", texts["status_done"]),
    ]
    assert {s.extra["edits"] for s in status[1:]} == {status[0].message_id}
    assert row["status_message_id"] == status[0].message_id
    # No failure message, no refund.
    assert not [s for s in gen.sent_texts(h, UID) if "credit is back" in s]
