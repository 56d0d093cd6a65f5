"""Routes per style and quality tiers, end to end: the whole engine, the real replicate SDK, the
fake Replicate checking each model's input against its schema (flick/model_inputs).

The styles file here has today's `hug` (compose_animate, one tier) and `together`: a direct
route on Kling v1.6 (both photos as its reference images), Seedance as its fallback, two tiers.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from flick.fsm.conversation import State
from flick.models import stats as figures
from flick.ops.instruments import Instruments
from flick.ops.metrics import Metrics
from flick.pipeline.imaging import with_comment
from flick.testing.direct_style import (
    DIRECT_STYLE,
    KLING,
    SEEDANCE,
    SEEDANCE_FALLBACK,
    tier,
)
from flick.testing.engine import EngineHarness, make_jpeg
from flick.testing.fake_replicate import Fault
from flick.testing.generation_tools import choose_style

UID = 7701

HUG = """
[styles.hug]
emoji = "🤗"
title = { en = "Hug" }
image_prompt = "These two people about to hug."
video_prompt = "They hug."
video_inputs = { resolution = "480p", num_frames = 81 }
"""

TOGETHER = DIRECT_STYLE + SEEDANCE_FALLBACK
QUICK = tier("quick", "Quick 480p 5 s", credits=1, usd=0.25, duration=5, resolution="480p")


def hd(credits: int = 3) -> str:
    return tier("hd", "HD 720p 10 s", credits=credits, usd=0.9, duration=10, resolution="720p")


def styles_file(tmp_path: Path, *tiers: str) -> Path:
    path = tmp_path / "styles.toml"
    path.write_text(HUG + TOGETHER + "".join(tiers or (QUICK, hd())), encoding="utf-8")
    return path


async def choose(h: EngineHarness, uid: int, style: str, tier: str | None) -> None:
    """/create, consent, the style and (when given) the tier; no photos yet."""
    await choose_style(h, uid, style)
    if tier is not None:
        await h.press(uid, f"tier:{style}:{tier}", h.last_keyboard(uid).message_id)
        await h.settle(generations=False)


async def photos(h: EngineHarness, uid: int) -> None:
    await h.photo(uid, make_jpeg("red"))
    await h.photo(uid, make_jpeg("blue"))
    await h.settle(generations=False)


def decoded(uri: str) -> bytes:
    header, _, data = uri.partition(",")
    assert header == "data:image/jpeg;base64"
    return base64.b64decode(data)


async def test_a_direct_style_animates_both_photos_for_its_tier_s_price(
    harness: Any, gen: Any, storage: Any, fake_openai: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    fake_replicate.models |= {KLING}
    h = await harness(styles_file=styles_file(tmp_path), free_credits=5)
    await choose(h, UID, "together", None)
    # Two tiers: the quality is asked for, with the price each costs.
    tiers = h.last_keyboard(UID).buttons()
    assert [d for _, d in tiers] == ["tier:together:quick", "tier:together:hd"]
    assert [label for label, _ in tiers] == [
        "Quick 480p 5 s · 1 credit",
        "HD 720p 10 s · 3 credits",
    ]
    assert gen.actor_state(h, UID) is State.CHOOSING_TIER
    await h.press(UID, "tier:together:hd", h.last_keyboard(UID).message_id)
    await h.settle(generations=False)
    await photos(h, UID)
    gen_id = await gen.generation_id(UID)
    await h.settle()

    # No picture composed: the model got both photos, and the tier's duration.
    assert fake_openai.calls("images.edit") == []
    (create,) = fake_replicate.calls("predictions.create")
    assert create.path == f"/v1/models/{KLING}/predictions"
    sent = create.json["input"]
    assert set(sent) == {"prompt", "aspect_ratio", "duration", "reference_images"}
    assert sent["duration"] == 10 and sent["aspect_ratio"] == "9:16"
    row = await gen.generation(gen_id)
    stored = [await storage.get(row["photo1_key"]), await storage.get(row["photo2_key"])]
    # The photos as stored, marked with the generation (so a lost create is found as ours).
    marked = [with_comment(photo, f"flick generation {gen_id}") for photo in stored]
    assert [decoded(uri) for uri in sent["reference_images"]] == marked
    assert (row["status"], row["route"], row["tier"], row["video_model"]) == (
        "done", "direct", "hd", KLING
    )  # fmt: skip
    # The tier's price from the configuration, its provider cost recorded for /stats' margin.
    assert (row["charged"], row["cost_usd"], row["refunded"]) == (3, 0.9, False)
    assert (await figures.stats(1))["cost_usd"] == 0.9  # what /stats' margin subtracts
    assert await gen.ledger(UID) == [("free", 5, 5, None), ("generation", -3, 2, gen_id)]
    assert len(gen.videos(h, UID)) == 1


async def test_a_style_with_one_tier_skips_the_step_and_costs_one_credit(
    harness: Any, gen: Any, fake_openai: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    h = await harness(styles_file=styles_file(tmp_path))
    await choose(h, UID, "hug", None)
    assert gen.actor_state(h, UID) is State.WAITING_FOR_PHOTOS  # no quality step
    await photos(h, UID)
    gen_id = await gen.generation_id(UID)
    await h.settle()
    row = await gen.generation(gen_id)
    assert (row["status"], row["route"], row["tier"], row["charged"]) == (
        "done", "compose_animate", "standard", 1
    )  # fmt: skip
    assert len(fake_openai.calls("images.edit")) == 1
    (create,) = fake_replicate.calls("predictions.create")
    assert create.path == f"/v1/models/{gen.VIDEO_MODEL}/predictions"
    assert set(create.json["input"]) == {"prompt", "image", "resolution", "num_frames"}


async def test_a_tier_gone_when_its_button_is_pressed_is_answered_and_costs_nothing(
    harness: Any, gen: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    path = styles_file(tmp_path)
    h = await harness(styles_file=path, free_credits=5)
    await choose(h, UID, "together", None)
    picker = h.last_keyboard(UID).message_id
    path.write_text(HUG + TOGETHER + QUICK, encoding="utf-8")  # the operator drops HD
    assert h.app.reload_styles()
    await h.press(UID, "tier:together:hd", picker)
    await h.settle(generations=False)

    assert gen.t("en", "tier_gone") in gen.sent_texts(h, UID)
    # The choice again, as configured now; nothing charged, nothing started.
    assert [d for _, d in h.last_keyboard(UID).buttons()] == ["tier:together:quick"]
    assert gen.actor_state(h, UID) is State.CHOOSING_TIER
    assert await h.balance(UID) == 5
    assert await gen.generation_id(UID) is None
    assert fake_replicate.calls("predictions.create") == []


async def test_a_tier_gone_by_the_time_it_is_charged_asks_again_and_keeps_the_photos(
    harness: Any, gen: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    fake_replicate.models |= {KLING}
    path = styles_file(tmp_path)
    h = await harness(styles_file=path, free_credits=5)
    await choose(h, UID, "together", "hd")
    path.write_text(HUG + TOGETHER + QUICK, encoding="utf-8")
    assert h.app.reload_styles()
    await photos(h, UID)

    assert gen.t("en", "tier_gone") in gen.sent_texts(h, UID)
    assert await gen.generation_id(UID) is None and await h.balance(UID) == 5
    assert gen.actor_state(h, UID) is State.CHOOSING_TIER
    # Chosen again: the video starts from the photos already sent, at the new choice's price.
    await h.press(UID, "tier:together:quick", h.last_keyboard(UID).message_id)
    await h.settle()
    gen_id = await gen.generation_id(UID)
    row = await gen.generation(gen_id)
    assert (row["status"], row["tier"], row["charged"]) == ("done", "quick", 1)
    assert len(fake_replicate.calls("predictions.create")) == 1


async def test_the_price_is_the_configuration_s_when_charged_not_the_button_s(
    harness: Any, gen: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    fake_replicate.models |= {KLING}
    path = styles_file(tmp_path)
    h = await harness(styles_file=path, free_credits=5)
    await choose(h, UID, "together", "hd")  # shown at 3 credits
    path.write_text(HUG + TOGETHER + QUICK + hd(credits=2), encoding="utf-8")
    assert h.app.reload_styles()
    await photos(h, UID)
    gen_id = await gen.generation_id(UID)
    await h.settle()
    assert (await gen.generation(gen_id))["charged"] == 2
    assert await gen.ledger(UID) == [("free", 5, 5, None), ("generation", -2, 3, gen_id)]


async def test_a_tier_dearer_than_the_balance_keeps_the_photos_and_charges_nothing(
    harness: Any, gen: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    h = await harness(styles_file=styles_file(tmp_path), free_credits=2)
    await choose(h, UID, "together", "hd")
    await photos(h, UID)
    assert gen.t("en", "no_credits_tier", balance=2, n=3) in gen.sent_texts(h, UID)
    assert await gen.generation_id(UID) is None and await h.balance(UID) == 2
    assert gen.actor_state(h, UID) is State.WAITING_FOR_PHOTOS
    assert fake_replicate.calls("predictions.create") == []


async def test_a_direct_model_that_finds_no_face_is_refunded_in_plain_words(
    harness: Any, gen: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    fake_replicate.models |= {KLING}
    fake_replicate.script(
        "predictions.create", Fault.prediction_fails("Could not detect face in the image")
    )
    h = await harness(styles_file=styles_file(tmp_path), free_credits=5)
    await choose(h, UID, "together", "hd")
    await photos(h, UID)
    gen_id = await gen.generation_id(UID)
    await h.settle()

    row = await gen.generation(gen_id)
    assert (row["status"], row["refunded"], row["error_class"]) == (
        "failed", True, "input_refused"
    )  # fmt: skip
    assert gen.t("en", "failed_no_face", n=5) in gen.sent_texts(h, UID)
    assert await gen.ledger(UID) == [
        ("free", 5, 5, None),
        ("generation", -3, 2, gen_id),
        ("refund", 3, 5, gen_id),
    ]
    assert gen.videos(h, UID) == []
    assert len(fake_replicate.calls("predictions.create")) == 1  # a refusal is not retried


async def test_a_direct_model_refusing_the_aspect_ratio_is_refunded_in_plain_words(
    harness: Any, gen: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    fake_replicate.models |= {KLING}
    fake_replicate.script(
        "predictions.create",
        Fault.prediction_fails("Invalid image: aspect ratio must be between 1:2.5 and 2.5:1"),
    )
    h = await harness(styles_file=styles_file(tmp_path, QUICK))
    await choose(h, UID, "together", None)  # one tier: no step
    await photos(h, UID)
    await h.settle()
    assert gen.t("en", "failed_bad_aspect", n=1) in gen.sent_texts(h, UID)
    assert await h.balance(UID) == 1


async def test_the_fallback_model_serves_while_the_model_is_down_then_the_model_returns(
    harness: Any, gen: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    fake_replicate.models |= {KLING, SEEDANCE}
    metrics = Metrics()
    h = await harness(
        styles_file=styles_file(tmp_path, QUICK),
        instruments=Instruments(metrics),
        video_breaker_failures=1,
        video_breaker_cool_down_seconds=600,
    )
    chooser = h.app.supervisor.ctx.runner.models
    # Kling answers 503 once: a transient failure, retried (on Kling: that generation asked it).
    fake_replicate.script("predictions.create", Fault.status(503, message="overloaded"))
    first = await run_one(h, gen, UID)
    assert (first["status"], first["video_model"]) == ("done", KLING)

    # The circuit is open: the next generation of the style goes to Seedance, with its inputs.
    second = await run_one(h, gen, UID + 1)
    assert (second["status"], second["video_model"]) == ("done", SEEDANCE)
    create = fake_replicate.calls("predictions.create")[-1]
    assert create.path == f"/v1/models/{SEEDANCE}/predictions"
    assert create.json["input"]["resolution"] == "480p" and create.json["input"]["duration"] == 5
    sample = metrics.registry.get_sample_value
    assert sample("flick_video_model_switches_total", {"model": KLING, "to": SEEDANCE}) == 1

    # After the cool-down the next generation is Kling's trial; it works, the circuit closes.
    chooser.clock = lambda: time.monotonic() + 600
    third = await run_one(h, gen, UID + 2)
    assert third["video_model"] == KLING
    fourth = await run_one(h, gen, UID + 3)
    assert fourth["video_model"] == KLING
    changes = "flick_video_model_circuit_changes_total"
    assert sample(changes, {"model": KLING, "state": "open"}) == 1
    assert sample(changes, {"model": KLING, "state": "closed"}) == 1


async def run_one(h: EngineHarness, gen: Any, uid: int) -> dict[str, Any]:
    await choose(h, uid, "together", None)
    await photos(h, uid)
    gen_id = await gen.generation_id(uid)
    await h.settle()
    row: dict[str, Any] = await gen.generation(gen_id)
    return row


async def test_a_photo_or_text_before_the_quality_is_chosen_gets_asked_for_the_quality(
    harness: Any, gen: Any, fake_replicate: Any, tmp_path: Path
) -> None:
    h = await harness(styles_file=styles_file(tmp_path), free_credits=5)
    await choose(h, UID, "together", None)
    await h.photo(UID, make_jpeg("red"))
    await h.text(UID, "hd please")
    await h.press(UID, "tier:hug:standard", h.last_keyboard(UID).message_id)  # another style's
    await h.settle(generations=False)
    assert gen.sent_texts(h, UID).count(gen.t("en", "expect_tier")) == 2
    assert gen.actor_state(h, UID) is State.CHOOSING_TIER
    assert h.app.supervisor.actors[UID].conv.photos == []  # nothing kept, nothing charged
    assert await h.balance(UID) == 5 and await gen.generation_id(UID) is None
