"""A harness that runs the whole engine (real PostgreSQL, real storage) with a recording outbox.

    async with EngineHarness(database_url, storage, tmp_path) as h:
        await h.command(7, "start")
        await h.settle()
        assert "Flick" in h.outbox.to(7)[0].text

Tests and benchmarks speak to it in user terms (commands, photos, button presses, payments);
the engine beneath is the one `flick run` uses.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
from PIL import Image

from flick import events as ev
from flick.app import Flick
from flick.fsm.generation import ACTIVE
from flick.models import tables
from flick.models.db import pool
from flick.ops.instruments import Instruments
from flick.pipeline.local import LocalImageProvider, LocalVideoProvider
from flick.pipeline.runner import PipelineConfig
from flick.ports import FaceDetector, ImageProvider, Storage, VideoProvider
from flick.settings import Settings
from flick.testing.faces import OneFace
from flick.testing.memory import RecordingOutbox, Sent

#: Flick's tables, and the queue's (pgqueuer's, made by a raw migration): a test starts empty.
TABLES = ", ".join(
    [t._meta.tablename for t in tables.TABLES]
    + ["pgqueuer", "pgqueuer_log", "pgqueuer_statistics", "pgqueuer_schedules", "work_config"]
)


def make_jpeg(color: str = "red", size: tuple[int, int] = (320, 400)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


_IDS = itertools.count(1)

#: `send` gives back the event it was given, with its type.
E = TypeVar("E", bound=ev.Event)


async def truncate() -> None:
    await pool().execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


class EngineHarness:
    def __init__(
        self,
        database_url: str,
        storage: Storage,
        data_dir: Path,
        *,
        image: ImageProvider | None = None,
        video: VideoProvider | None = None,
        outbox: RecordingOutbox | None = None,
        pipeline: PipelineConfig | None = None,
        fresh: bool = True,
        resume: bool = True,
        instruments: Instruments | None = None,
        faces: FaceDetector | None = None,
        **settings: Any,
    ) -> None:
        self.storage = storage  # the one the engine was given (Flick's own is Optional)
        self.outbox = outbox or RecordingOutbox()
        self._own_video = video is None
        self.video = video or LocalVideoProvider(data_dir / "videos")
        self.image = image or LocalImageProvider()
        base = {
            "data_dir": data_dir,
            "image_provider": "local",
            "video_provider": "local",
            "actor_idle_seconds": 30.0,
        }
        base.update(settings)
        self.settings = Settings(_env_file=None, **base)  # type: ignore[arg-type,call-arg]
        self.app = Flick(
            self.settings,
            self.outbox,
            image=self.image,
            video=self.video,
            pipeline=pipeline
            or PipelineConfig(
                poll_interval=0.02, compose_budget=20, animate_budget=30, deliver_budget=20
            ),
            database_url=database_url,
            storage=storage,
            lock=False,
            resume=resume,
            instruments=instruments,
            # The check runs in every engine test, on a detector that finds one face in the
            # generated photos; the face tests pass the real one.
            faces=faces or OneFace(),
        )
        # Shared by every harness of the process: a restarted engine's new updates must never
        # look like redeliveries of an earlier one's (Telegram's ids grow; only a test's
        # deliberate `send(same_event)` redelivers).
        self._ids = _IDS
        self._fresh = fresh
        self._url = database_url

    async def __aenter__(self) -> EngineHarness:
        if self._fresh:  # before the engine starts, so nothing of an earlier test is resumed
            conn = await asyncpg.connect(self._url)
            try:
                await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
            except asyncpg.UndefinedTableError:
                pass  # a new database: the engine's migrations are about to build it
            finally:
                await conn.close()
        await self.app.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.app.__aexit__(et, e, tb)
        if self._own_video and isinstance(self.video, LocalVideoProvider):
            await self.video.close()

    # ---- speaking as a user -----------------------------------------------------------------
    @staticmethod
    def user(uid: int, lang: str = "en") -> ev.UserInfo:
        return ev.UserInfo(uid, uid, f"user{uid}", f"User{uid}", lang)

    def next_id(self, prefix: str = "m") -> str:
        return f"{prefix}{next(self._ids)}"

    async def send(self, event: E) -> E:
        await self.app.dispatch(event)
        return event

    async def command(self, uid: int, name: str, args: str = "") -> ev.Command:
        return await self.send(ev.Command(self.user(uid), self.next_id(), name, args))

    async def text(self, uid: int, text: str) -> ev.Text:
        return await self.send(ev.Text(self.user(uid), self.next_id(), text))

    async def photo(
        self,
        uid: int,
        data: bytes | None = None,
        *,
        document: bool = False,
        media_group: str | None = None,
    ) -> ev.Photo:
        file_id = self.next_id("file")
        self.outbox.files[file_id] = make_jpeg() if data is None else data
        ref = ev.PhotoRef(
            file_id, f"u{file_id}", len(self.outbox.files[file_id]), as_document=document
        )
        return await self.send(ev.Photo(self.user(uid), self.next_id(), ref, media_group))

    async def press(self, uid: int, data: str, message_id: int | None = None) -> ev.ButtonPress:
        cid = self.next_id("cb")
        return await self.send(ev.ButtonPress(self.user(uid), cid, cid, data, message_id))

    async def unsupported(self, uid: int, kind: str) -> ev.Unsupported:
        return await self.send(ev.Unsupported(self.user(uid), self.next_id(), kind))

    # ---- reading the conversation -----------------------------------------------------------
    def last_keyboard(self, uid: int) -> Sent:
        return [s for s in self.outbox.to(uid) if s.keyboard][-1]

    async def pick_style(self, uid: int, style: str = "hug") -> None:
        picker = [
            s
            for s in self.outbox.to(uid)
            if any((d or "").startswith("style:") for _, d in s.buttons())
        ][-1]
        await self.press(uid, f"style:{style}", picker.message_id)

    async def settle(self, timeout: float = 30.0, generations: bool = True) -> None:  # noqa: ASYNC109
        """Wait until every mailbox is empty, no actor is busy or writing its user's row, and
        (optionally) no video runs."""
        sup = self.app.supervisor
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            busy = (
                sup.mailbox_depth()
                or sup.intakes_running()
                or any(
                    a.busy or a.pending_photos or not a.loaded or a.row_write.pending
                    for a in sup.actors.values()
                )
            )
            if generations:
                busy = busy or sup.generations_running
            if not busy and generations:
                # Handed over to the queue and not taken yet, or taken and ending: the row says.
                busy = await _active_generations() > 0
            if not busy:
                await asyncio.sleep(0)
                if not sup.mailbox_depth():
                    return
            await asyncio.sleep(0.005)
        busy_actors = {
            uid: ("busy" if a.busy else "")
            + (" photos" if a.pending_photos else "")
            + ("" if a.loaded else " loading")
            for uid, a in sup.actors.items()
            if a.busy or a.pending_photos or not a.loaded
        }
        raise TimeoutError(
            f"the engine did not settle: mailboxes {sup.mailbox_depth()}, intakes "
            f"{sup.intakes_running()}, generations {sup.generations_running}, "
            f"actors {busy_actors}, restarts pending {sorted(sup._restarts)}"
        )

    async def make_video(self, uid: int, style: str = "hug") -> None:
        """The whole happy path for one user (consent included)."""
        await self.command(uid, "create")
        await self.settle()
        if any((d or "") == "consent" for _, d in self.last_keyboard(uid).buttons()):
            await self.press(uid, "consent", self.last_keyboard(uid).message_id)
            await self.settle()
        await self.pick_style(uid, style)
        await self.settle()
        await self.photo(uid, make_jpeg("red"))
        await self.photo(uid, make_jpeg("blue"))
        await self.settle()

    async def balance(self, uid: int) -> int:
        value = await pool().fetchval("SELECT balance FROM users WHERE telegram_id = $1", uid)
        return int(value)

    async def ledger_sum(self, uid: int) -> int:
        value = await pool().fetchval(
            'SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE "user" = $1', uid
        )
        return int(value)


async def _active_generations() -> int:
    active = [status.value for status in ACTIVE]
    return int(
        await pool().fetchval("SELECT count(*) FROM generations WHERE status = ANY($1)", active)
    )
