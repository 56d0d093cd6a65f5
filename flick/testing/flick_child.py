"""The Flick process the SIGKILL tests kill (`flick.testing.killable` starts it, forked from a
warm server so a start costs no imports).

It runs the whole engine (`flick.app.Flick`, resuming unfinished generations at start) on the
test's PostgreSQL and S3, with the real OpenAI and Replicate SDKs talking to the fakes in the
test's process. Telegram is the recording outbox, reporting to the test over a Unix socket, one
JSON object a line, written before Telegram's answer comes back (so a kill never hides a video
Telegram already has):

    {"ev": "ready", "pid": 123}              the engine is up (and resuming)
    {"ev": "started", "generation": 5}       the user's photos made a generation (`start`)
    {"ev": "uploading", "chat": 7, "key": …} a video is on its way to Telegram
    {"ev": "video", "chat": 7, "key": …}     Telegram has the video

`hold_delivery`: the upload never ends (Telegram is slow): the generation stays `delivering`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from flick.media import VideoMeta
from flick.models.db import pool
from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.pipeline.runner import PipelineConfig
from flick.ports import Keyboard
from flick.storage import S3Storage
from flick.testing.engine import EngineHarness
from flick.testing.generation_tools import ask_for_a_video
from flick.testing.memory import RecordingOutbox
from flick.testing.providers import OPENAI_KEY, REPLICATE_TOKEN, VIDEO_MODEL

#: Budgets far beyond any test: a held step must still be in that step when the test kills.
PATIENT = PipelineConfig(
    poll_interval=0.02,
    compose_budget=120.0,
    animate_budget=120.0,
    deliver_budget=120.0,
    starting_timeout=120.0,
)


@dataclass(frozen=True)
class ChildConfig:
    socket: str  # the test's Unix socket
    database_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    openai_url: str
    replicate_url: str
    data_dir: str
    styles_file: str | None = None
    free_credits: int = 5
    fresh: bool = False  # empty the database first (the first child of a test)
    start: dict[str, Any] | None = None  # {"uid": 7, "style": "hug"}: make a generation
    hold_delivery: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class ReportingOutbox(RecordingOutbox):
    """The recording outbox, telling the test about each video as Telegram gets it."""

    def __init__(self, report: Any, hold: bool) -> None:
        super().__init__()
        self._report = report
        self._hold = hold

    async def send_video(
        self,
        chat_id: int,
        storage_key: str,
        caption: str,
        keyboard: Keyboard | None = None,
        file_id: str | None = None,
        *,
        local_path: Path | None = None,
        meta: VideoMeta | None = None,
    ) -> str:
        await self._report({"ev": "uploading", "chat": chat_id, "key": storage_key})
        if self._hold:
            await asyncio.Event().wait()  # until the kill
        sent = await super().send_video(
            chat_id, storage_key, caption, keyboard, file_id, local_path=local_path, meta=meta
        )
        await self._report({"ev": "video", "chat": chat_id, "key": storage_key})
        return sent


async def serve(cfg: ChildConfig) -> None:
    _, writer = await asyncio.open_unix_connection(cfg.socket)

    async def report(event: dict[str, Any]) -> None:
        writer.write(json.dumps(event).encode() + b"\n")
        await writer.drain()

    storage = S3Storage(cfg.s3_endpoint, cfg.s3_access_key, cfg.s3_secret_key, cfg.s3_bucket)
    image = OpenAIImageProvider(OPENAI_KEY, base_url=cfg.openai_url, timeout=120.0)
    video = ReplicateVideoProvider(
        REPLICATE_TOKEN, model=VIDEO_MODEL, base_url=cfg.replicate_url, timeout=120.0
    )
    options: dict[str, Any] = {"free_credits": cfg.free_credits}
    if cfg.styles_file:
        options["styles_file"] = Path(cfg.styles_file)
    harness = EngineHarness(
        cfg.database_url,
        storage,
        Path(cfg.data_dir),
        image=image,
        video=video,
        outbox=ReportingOutbox(report, cfg.hold_delivery),
        pipeline=PATIENT,
        fresh=cfg.fresh,
        **options,
    )
    async with storage, harness as h:
        await report({"ev": "ready"})
        if cfg.start is not None:
            gen_id = await _start(h, int(cfg.start["uid"]), str(cfg.start["style"]))
            await report({"ev": "started", "generation": gen_id})
        await asyncio.Event().wait()  # until the kill


async def _start(h: EngineHarness, uid: int, style: str) -> int:
    """/create, consent, the style and two photos, as the user would; the generation's id."""
    await ask_for_a_video(h, uid, style)
    gen_id = await pool().fetchval('SELECT max(id) FROM generations WHERE "user" = $1', uid)
    if gen_id is None:
        raise RuntimeError(f"user {uid}'s photos made no generation")
    return int(gen_id)


def main(config: str) -> None:
    """The child's entry point (a forked process): its log goes to data_dir/flick.log."""
    cfg = ChildConfig(**json.loads(config))
    logger.remove()
    logger.add(Path(cfg.data_dir) / "flick.log", level="INFO")
    logger.add(sys.stderr, level="ERROR")
    asyncio.run(serve(cfg))
