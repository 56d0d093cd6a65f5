"""The load `bench.workers` puts on the gateway: users asking for a video, all at once, and the
database's word on when their generations were handed over and delivered."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import asyncpg

from bench.scale import CountingOutbox, Driver, user
from flick import events as ev
from flick.app import Flick
from flick.media import VideoMeta
from flick.ports import Keyboard
from flick.storage import S3Storage


class S3ReadingOutbox(CountingOutbox):
    """Counts what is sent, and reads each video back from S3 before "sending" it, as the
    Telegram gateway streams a worker's video from S3 to Telegram: the gateway's share of a
    delivery, minus Telegram."""

    def __init__(self, photo: bytes, storage: S3Storage) -> None:
        super().__init__(photo)
        self.storage = storage
        self.video_bytes = 0
        self.read_seconds: list[float] = []  # each video's read back from S3
        self.sending: dict[int, float] = {}  # chat → when its video's sending began (Unix time)

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
        self.sending.setdefault(chat_id, time.time())
        # The single process hands over the file it downloaded (and uploads it to S3 alongside);
        # a worker's video is only in S3.
        if local_path is None:
            started = time.monotonic()
            async for chunk in self.storage.stream(storage_key):
                self.video_bytes += len(chunk)
            self.read_seconds.append(time.monotonic() - started)
        return await super().send_video(
            chat_id, storage_key, caption, keyboard, file_id, local_path=local_path, meta=meta
        )


class Load:
    """New users, each from /create to their second photo; the second photo hands the
    generation over (charged, queued) in one transaction. Every Load of a sitting makes users
    no other has made (they have their free credit, and no earlier conversation)."""

    _uids = itertools.count(30_000_000)

    def __init__(self, app: Flick, outbox: CountingOutbox, window: int = 64) -> None:
        self.driver = Driver(app, outbox)
        self.window = window

    async def hand_over(self, g: int) -> list[int]:
        d, uids = self.driver, [next(self._uids) for _ in range(g)]
        steps: list[list[ev.Event]] = [
            [d.command(u, "create") for u in uids],
            [ev.ButtonPress(user(u), f"c{next(d.ids)}", f"cb{u}", "consent") for u in uids],
            [ev.ButtonPress(user(u), f"c{next(d.ids)}", f"cb{u}", "style:hug") for u in uids],
        ]
        for events in steps:
            await d.many(events, self.window)
        for n in range(2):
            photos: list[ev.Event] = [
                ev.Photo(user(u), f"p{next(d.ids)}", ev.PhotoRef(f"f{u}-{n}", f"u{u}-{n}", 2048))
                for u in uids
            ]
            await d.many(photos, self.window)
        return uids

    async def ended(self, db: asyncpg.Pool, uids: list[int], within: float) -> list[asyncpg.Record]:
        """The users' generation rows once each has ended (or `within` seconds passed)."""
        deadline = time.monotonic() + within
        while True:
            rows = list(
                await db.fetch(
                    'SELECT id, "user", status, refunded, created_at, finished_at FROM generations '
                    'WHERE "user" = ANY($1::bigint[])',
                    uids,
                )
            )
            ended = all(r["status"] == "done" or r["refunded"] for r in rows)
            if (ended and len(rows) >= len(uids)) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.1)
