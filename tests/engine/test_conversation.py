"""The conversation end to end: commands, the happy path to a delivered video, history, cancel,
language and the out-of-credit offer, on the real engine (PostgreSQL, S3, ffmpeg)."""

from __future__ import annotations

import pytest

from flick.fsm.conversation import State
from flick.i18n import LANGUAGES, language_name, t
from flick.models.db import pool
from flick.testing.engine import EngineHarness
from flick.testing.engine_tools import EngineTools
from flick.testing.harnesses import HarnessFactory, VideoFactory
from flick.testing.inflight import CountingVideo

UID = 501


async def test_start_gives_the_free_credit_once(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "start")
    await h.settle()
    await h.command(UID, "start")
    await h.settle()

    welcome = t("en", "welcome", name=f"User{UID}", n=1, price=50)
    assert tools.texts(h, UID) == [welcome, welcome]
    assert h.outbox.to(UID)[0].buttons() == [(t("en", "button_create"), "create")]
    assert await h.balance(UID) == 1
    rows = await tools.ledger(UID)
    assert [(r["reason"], r["delta"], r["balance_after"]) for r in rows] == [("free", 1, 1)]


async def test_a_returning_user_gets_no_second_free_credit(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    """A restarted actor (idle stop) loads the user again: still one 'free' row."""
    h = await harness(actor_idle_seconds=0.05)
    await h.command(UID, "start")
    await h.settle()
    await tools.wait_for(lambda: _no_actors(h), "the actor stopped for idleness")
    await h.command(UID, "start")
    await h.settle()
    assert await h.balance(UID) == 1
    assert [r["reason"] for r in await tools.ledger(UID)] == ["free"]


async def _no_actors(h: EngineHarness) -> bool:
    return not h.app.supervisor.actors


async def test_help_and_balance(harness: HarnessFactory, tools: EngineTools) -> None:
    h = await harness()
    await h.command(UID, "help")
    await h.command(UID, "balance")
    await h.command(UID, "nonsense")
    await h.settle()
    assert tools.texts(h, UID) == [
        t("en", "help"),
        t("en", "balance", n=1),
        t("en", "unknown_command"),
    ]


async def test_happy_path_delivers_a_video_and_spends_one_credit(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "create")
    await h.settle()
    consent = h.outbox.to(UID)[-1]
    assert consent.text == t("en", "consent_ask", terms=h.settings.terms_text)
    assert (await tools.saved(UID))[0] == State.CONSENT.value

    await h.press(UID, "consent", consent.message_id)
    await h.settle()
    picker = h.outbox.to(UID)[-1]
    assert picker.text == t("en", "pick_style", n=1)
    assert {d for _, d in picker.buttons()} == {f"style:{k}" for k in h.app.supervisor.ctx.styles}
    state, data = await tools.saved(UID)
    assert state == State.CHOOSING_STYLE.value and data["picker_message_id"] == picker.message_id
    assert await pool().fetchval(
        "SELECT consent_at IS NOT NULL FROM users WHERE telegram_id=$1", UID
    )

    await h.press(UID, "style:kiss", picker.message_id)
    await h.settle()
    kiss = h.app.supervisor.ctx.styles["kiss"].label("en")
    assert tools.texts(h, UID)[-1] == t("en", "send_photos", style=kiss)
    assert await tools.session(UID) == (
        State.WAITING_FOR_PHOTOS.value,
        {
            "style": "kiss",
            "photos": [],
            "photo_events": [],
            "picker_message_id": picker.message_id,
            "generation_id": None,
        },
    )

    await h.photo(UID, tools.jpeg("red"))
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", "photo_one_more")
    state, data = await tools.saved(UID)
    assert state == State.WAITING_FOR_PHOTOS.value and len(data["photos"]) == 1
    assert data["photos"][0].startswith(f"photos/{UID}/")
    stored = await h.storage.get(data["photos"][0])
    assert stored[:2] == b"\xff\xd8"  # kept as a JPEG in our bucket

    await h.photo(UID, tools.jpeg("blue"))
    await h.settle()

    videos = tools.calls(h, "send_video", UID)
    assert len(videos) == 1
    assert videos[0].text == t("en", "video_caption", style=kiss)
    row = dict(await pool().fetchrow('SELECT * FROM generations WHERE "user" = $1', UID))
    assert row["status"] == "done" and not row["refunded"] and row["charged"] == 1
    assert row["style"] == "kiss"
    assert row["video_key"] == videos[0].extra["key"]
    assert row["video_key"].startswith(f"videos/{UID}/") and row["video_key"].endswith("_kiss.mp4")
    assert row["combined_key"].startswith(f"combined/{UID}/")
    assert (await h.storage.get(row["video_key"]))[4:8] == b"ftyp"
    assert row["video_file_id"] == f"video-{row['video_key']}"
    assert await h.balance(UID) == 0
    assert await h.ledger_sum(UID) == 0
    assert [(r["reason"], r["delta"]) for r in await tools.ledger(UID)] == [
        ("free", 1),
        ("generation", -1),
    ]
    assert await tools.session(UID) == (
        State.IDLE.value,
        {
            "style": None,
            "photos": [],
            "photo_events": [],
            "picker_message_id": None,
            "generation_id": None,
            "last_video": row["id"],  # its buttons ("Try again", "Another style") work
        },
    )
    # The status message went composing → animating → sending → done, edited in place.
    statuses = [
        s
        for s in h.outbox.sent
        if s.chat_id == UID and s.method in ("send_text", "edit_text") and tools.is_status(s.text)
    ]
    assert [s.text for s in statuses] == [
        t("en", key, style=kiss)
        for key in ("status_composing", "status_animating", "status_sending", "status_done")
    ]
    assert {s.extra.get("edits") for s in statuses if s.method == "edit_text"} == {
        statuses[0].message_id
    }


async def test_history_lists_the_video_and_resends_it_by_file_id(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "history")
    await h.settle()
    assert tools.texts(h, UID) == [t("en", "history_empty")]

    await h.make_video(UID, "dance")
    gen_id, file_id = await pool().fetchrow(
        'SELECT id, video_file_id FROM generations WHERE "user" = $1', UID
    )
    await h.command(UID, "history")
    await h.settle()
    history = h.outbox.to(UID)[-1]
    assert history.text.startswith(t("en", "history_title"))
    dance = h.app.supervisor.ctx.styles["dance"].label("en")
    assert (
        t("en", "history_line", id=gen_id, style=dance, status=t("en", "gen_status_done"), date="")[
            :-1
        ]
        in history.text
    )
    assert history.buttons() == [(t("en", "button_resend", id=gen_id), f"video:{gen_id}")]

    before = len(tools.calls(h, "send_video", UID))
    press = await h.press(UID, f"video:{gen_id}", history.message_id)
    await h.settle()
    again = tools.calls(h, "send_video", UID)[before:]
    assert len(again) == 1
    assert again[0].extra["file_id"] == file_id  # re-sent by Telegram's id, not uploaded again
    assert again[0].text == t("en", "video_again")
    assert len(tools.answers(h, press.callback_id)) == 1
    assert await h.balance(UID) == 0  # a re-send is free


async def _cancel_from(h: EngineHarness, tools: EngineTools, state: State) -> str:
    await h.command(UID, "cancel")
    await h.settle()
    return tools.texts(h, UID)[-1]


async def test_cancel_in_every_state(harness: HarnessFactory, tools: EngineTools) -> None:
    h = await harness()
    # IDLE
    assert await _cancel_from(h, tools, State.IDLE) == t("en", "nothing_to_cancel")
    # CONSENT
    await h.command(UID, "create")
    await h.settle()
    assert (await tools.saved(UID))[0] == State.CONSENT.value
    assert await _cancel_from(h, tools, State.CONSENT) == t("en", "canceled")
    assert (await tools.saved(UID))[0] == State.IDLE.value
    # CHOOSING_STYLE
    await h.command(UID, "create")
    await h.settle()
    await h.press(UID, "consent", h.outbox.to(UID)[-1].message_id)
    await h.settle()
    assert (await tools.saved(UID))[0] == State.CHOOSING_STYLE.value
    assert await _cancel_from(h, tools, State.CHOOSING_STYLE) == t("en", "canceled")
    # WAITING_FOR_PHOTOS, with no photo and with one
    for photos in (0, 1):
        await tools.to_photos(h, UID)
        for _ in range(photos):
            await h.photo(UID)
        await h.settle()
        assert len((await tools.saved(UID))[1]["photos"]) == photos
        assert await _cancel_from(h, tools, State.WAITING_FOR_PHOTOS) == t("en", "canceled")
        assert await tools.session(UID) == (
            State.IDLE.value,
            {
                "style": None,
                "photos": [],
                "photo_events": [],
                "picker_message_id": None,
                "generation_id": None,
            },
        )
    assert await h.balance(UID) == 1  # nothing was spent so far
    # A cancelled picker's buttons are dead.
    old_picker = [s for s in h.outbox.to(UID) if s.text == t("en", "pick_style", n=1)][-1]
    await h.press(UID, "style:hug", old_picker.message_id)
    await h.settle()
    assert (await tools.saved(UID))[0] == State.IDLE.value


async def test_cancel_while_processing_refunds_and_delivers_nothing(
    harness: HarnessFactory, tools: EngineTools, video_factory: VideoFactory
) -> None:
    video = video_factory()
    video.gate.clear()  # the prediction stays "processing" until the test lets it go
    h = await harness(video=video)
    await tools.to_photos(h, UID)
    await h.photo(UID)
    await h.photo(UID)
    await h.settle(generations=False)
    state, data = await tools.saved(UID)
    gen_id = data["generation_id"]
    assert state == State.PROCESSING.value and gen_id is not None
    await tools.wait_for(lambda: _predicting(video), "the prediction started")
    assert await h.balance(UID) == 0

    await h.command(UID, "cancel")
    await h.settle()  # waits for the generation task to end too
    assert tools.texts(h, UID)[-1] == t("en", "canceled_refunded", balance=1)
    assert await h.balance(UID) == 1 == await h.ledger_sum(UID)
    row = await pool().fetchrow("SELECT status, refunded FROM generations WHERE id = $1", gen_id)
    assert (row["status"], row["refunded"]) == ("canceled", True)
    assert [r["reason"] for r in await tools.ledger(UID)] == ["free", "generation", "refund"]
    # Flick cancelled it at the provider. (Whether the tiny local render had already finished
    # by then depends on the machine's speed, so its final status is not what this checks.)
    assert video.canceled == [video.started[0]]
    video.gate.set()
    await h.settle()
    assert tools.calls(h, "send_video", UID) == []
    assert (await tools.saved(UID))[0] == State.IDLE.value
    assert h.app.supervisor.generations_running == 0


async def _predicting(video: CountingVideo) -> bool:
    return bool(video.started)


async def test_language_switches_the_texts_to_russian(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "language")
    await h.settle()
    pick = h.outbox.to(UID)[-1]
    assert pick.buttons() == [(language_name(lang), f"lang:{lang}") for lang in LANGUAGES]
    assert ("Русский", "lang:ru") in pick.buttons() and len(LANGUAGES) == 7
    press = await h.press(UID, "lang:ru", pick.message_id)
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("ru", "language_set") != t("en", "language_set")
    assert len(tools.answers(h, press.callback_id)) == 1
    await h.command(UID, "help")
    await h.command(UID, "balance")
    await h.settle()
    assert tools.texts(h, UID)[-2:] == [t("ru", "help"), t("ru", "balance", n=1)]
    assert t("ru", "help") != t("en", "help")
    assert await pool().fetchval("SELECT language FROM users WHERE telegram_id=$1", UID) == "ru"


async def test_telegram_language_code_is_used_until_the_user_chooses(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    from flick import events as ev

    ru_user = ev.UserInfo(UID, UID, "ivan", "Ivan", "ru-RU")
    await h.send(ev.Command(ru_user, h.next_id(), "help"))
    await h.settle()
    assert tools.texts(h, UID) == [t("ru", "help")]


async def test_out_of_credit_create_offers_the_packages(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.make_video(UID)
    assert await h.balance(UID) == 0
    await h.command(UID, "create")
    await h.settle()
    offer = h.outbox.to(UID)[-1]
    assert offer.text == t("en", "no_credits", balance=0)
    packages = h.app.supervisor.ctx.packages
    assert offer.buttons() == [(p.label("en"), f"buy:{p.index}") for p in packages]
    assert [d for _, d in offer.buttons()] == ["buy:0", "buy:1", "buy:2", "buy:3"]
    assert (await tools.saved(UID))[0] == State.IDLE.value


async def test_buy_command_and_plain_buy_button_show_the_packages(
    harness: HarnessFactory, tools: EngineTools
) -> None:
    h = await harness()
    await h.command(UID, "buy")
    await h.press(UID, "buy")
    await h.settle()
    intro = t("en", "buy_intro", balance=1)
    assert tools.texts(h, UID) == [intro, intro]
    assert await pool().fetchval("SELECT count(*) FROM orders") == 0


@pytest.mark.parametrize("command", ["terms", "paysupport"])
async def test_terms_and_paysupport_answer(
    harness: HarnessFactory, tools: EngineTools, command: str
) -> None:
    h = await harness()
    await h.command(UID, command)
    await h.settle()
    expected = (
        t("en", "terms", terms=h.settings.terms_text)
        if command == "terms"
        else t(
            "en",
            "paysupport",
            contact=h.settings.support_contact,
            payments=t("en", "paysupport_none"),
        )
    )
    assert tools.texts(h, UID) == [expected]
