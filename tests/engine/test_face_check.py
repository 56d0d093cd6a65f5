"""The face check at photo intake, with the real detector on real faces (scikit-image's sample
photos, shipped in its wheel): a photo without one usable face is refused with a plain answer,
is not counted and costs nothing; two good photos make a video as before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace

import pytest

from flick import events as ev
from flick.i18n import t
from flick.models.db import pool
from flick.pipeline.faces import HaarFaceDetector
from flick.testing import sample_faces
from flick.testing.engine import EngineHarness

Harness = Callable[..., Awaitable[EngineHarness]]
UID = 4301


@pytest.fixture(scope="module")
def detector() -> Iterator[HaarFaceDetector]:
    with HaarFaceDetector() as running:
        yield running


async def statuses(uid: int) -> list[str]:
    rows = await pool().fetch('SELECT status FROM generations WHERE "user" = $1', uid)
    return [r["status"] for r in rows]


async def test_two_photos_with_a_face_each_make_a_video(
    harness: Harness, tools: SimpleNamespace, detector: HaarFaceDetector
) -> None:
    h = await harness(faces=detector)
    await tools.to_photos(h, UID)
    await h.photo(UID, sample_faces.astronaut())
    await h.photo(UID, sample_faces.portrait())
    await h.settle()
    assert await statuses(UID) == ["done"] and await h.balance(UID) == 0


@pytest.mark.parametrize(
    ("photo", "answer"),
    [
        (sample_faces.no_face, "face_none"),
        (sample_faces.two_faces, "face_several"),
        (sample_faces.small_face, "face_too_small"),
    ],
)
async def test_a_photo_without_one_usable_face_is_refused_and_costs_nothing(
    harness: Harness,
    tools: SimpleNamespace,
    detector: HaarFaceDetector,
    photo: Callable[[], bytes],
    answer: str,
) -> None:
    h = await harness(faces=detector)
    await tools.to_photos(h, UID)
    await h.photo(UID, sample_faces.astronaut())
    await h.settle()
    before = await tools.snapshot(h, UID)
    await h.photo(UID, photo())
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("en", answer)
    assert await tools.snapshot(h, UID) == before  # not counted, nothing charged
    await h.photo(UID, sample_faces.portrait())  # a good photo then completes the pair
    await h.settle()
    assert await statuses(UID) == ["done"] and await h.balance(UID) == 0


async def test_the_answer_is_in_the_users_language(
    harness: Harness, tools: SimpleNamespace, detector: HaarFaceDetector
) -> None:
    h = await harness(faces=detector)
    await h.send(ev.Command(h.user(UID, "ru"), h.next_id(), "create", ""))
    await h.settle()
    await h.press(UID, "consent", h.last_keyboard(UID).message_id)
    await h.settle()
    await h.pick_style(UID)
    await h.settle()
    photo = tools.photo_event(h, UID, sample_faces.no_face())
    await h.send(ev.Photo(h.user(UID, "ru"), photo.event_id, photo.photo, None))
    await h.settle()
    assert tools.texts(h, UID)[-1] == t("ru", "face_none")


async def test_with_the_check_off_any_photo_is_taken(
    harness: Harness, tools: SimpleNamespace
) -> None:
    h = await harness(face_check=False)
    assert h.app.supervisor.ctx.faces is None
    await tools.to_photos(h, UID)
    await h.photo(UID, sample_faces.no_face())
    await h.photo(UID, sample_faces.no_face())
    await h.settle()
    assert await statuses(UID) == ["done"] and await h.balance(UID) == 0
