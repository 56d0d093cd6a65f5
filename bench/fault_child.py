"""Flick as a real process for the fault campaign (`bench.faults` starts, kills and restarts it).

The child runs Flick wired as `flick run` wires it (TelegramGateway on a kurigram client, the
engine resuming unfinished work after Telegram is up), with the offline Telegram in place of the
network. Its PostgreSQL, SeaweedFS, OpenAI and Replicate all live in the parent and survive the
kills. Protocol, one JSON object a line:

  stdin  (parent → child): updates users send, each with the ids Telegram gave it for good (the
         parent assigns them, so a redelivered update is the same update): e.g.
         {"op": "cmd", "uid": 5, "name": "create", "id": 1000000007, "pts": 1000012, "date": …},
         {"op": "tap", "uid": 5, "data": "style:hug", "mid": 12, "qid": 31},
         {"op": "photo", "uid": 5, "photo": 9, "media_id": …, "id": …, "pts": …, "date": …},
         {"op": "precheckout", "uid": 5, "payload": "order:…", "amount": 50, "qid": 32},
         {"op": "pay", "uid": 5, "payload": "order:…", "amount": 50, "charge": "…", "id": …}
  stdout (child → parent): what Telegram received, written and flushed before the bot hears
         Telegram's answer, so a kill can never hide something Telegram already has:
         {"ev": "ready"}, {"ev": "text", "chat": 5, "text": "…"},
         {"ev": "video", "chat": 5, "prediction": "<id named in the file>"},
         {"ev": "invoice", "chat": 5}, {"ev": "precheckout", "uid": 5, "qid": 32, "ok": true}

The bot's Stars history (`cfg["stars"]`: every charge users made so far) is Telegram's, so each
incarnation of the offline Telegram starts with it: Flick can reconcile against it at start-up.
End of stdin or SIGTERM: a graceful stop (drain, park generations at a resumable point).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from bench.common import bench_settings, quiet_logging
from bench.fault_telegram import VIDEO_MARK
from bench.offline import inject
from flick.app import Flick
from flick.ops.collector import SurgeFreeze, settle_heap
from flick.pipeline.openai_images import OpenAIImageProvider
from flick.pipeline.replicate_video import ReplicateVideoProvider
from flick.pipeline.runner import PipelineConfig
from flick.runtime import reconcile_at_start
from flick.storage import S3Storage
from flick.telegram.gateway import TelegramGateway
from flick.testing.telegram import Incoming, OfflineTelegram, raw
from flick.testing.telegram.wire import chat_of


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Telegram:
    """The offline Telegram, slowed to a network's round trip, reporting what it receives."""

    def __init__(self, tg: OfflineTelegram, latency: float) -> None:
        self.tg = tg
        self.latency = latency
        self.users: dict[int, Any] = {}
        self.queries: dict[int, int] = {}  # pre-checkout query id → user id
        self._inner = tg.server.invoke
        tg.server.invoke = self.invoke  # type: ignore[method-assign]

    async def invoke(self, query: Any) -> Any:
        if self.latency:
            # Half there: the request reaches Telegram after this, the answer half later.
            await asyncio.sleep(self.latency / 2)
        result = await self._inner(query)
        self.tg.server.exchanges.clear()  # a long campaign must not grow the recorder
        self._report(query)
        if self.latency:
            await asyncio.sleep(self.latency / 2)
        return result

    def _report(self, query: Any) -> None:
        functions = raw.functions
        if isinstance(query, functions.messages.SendMessage):
            emit({"ev": "text", "chat": chat_of(query), "text": query.message[:200]})
        elif isinstance(query, functions.messages.SendMedia):
            if isinstance(query.media, raw.types.InputMediaInvoice):
                emit({"ev": "invoice", "chat": chat_of(query)})
            else:
                emit({"ev": "video", "chat": chat_of(query), "prediction": self._marked()})
        elif isinstance(query, functions.messages.SetBotPrecheckoutResults):
            uid = self.queries.pop(query.query_id, None)
            emit({"ev": "precheckout", "uid": uid, "qid": query.query_id,
                  "ok": bool(query.success)})  # fmt: skip

    def _marked(self) -> str | None:
        """The prediction whose file this video is (see VIDEO_MARK), from what was just sent."""
        media = self.tg.server.media
        data = media[-1].data if media else None
        media.clear()  # a long campaign must not keep every video
        at = data.rfind(VIDEO_MARK) if data else -1
        if data is None or at < 0:
            return None
        tail = data[at + len(VIDEO_MARK) :]
        return tail.split(b"\0", 1)[0].decode(errors="replace") or None

    def user(self, uid: int) -> Any:
        user = self.users.get(uid)
        if user is None:
            user = self.users[uid] = self.tg.user(uid, f"User{uid}", language_code="en")
        return user

    def incoming(self, cmd: dict[str, Any]) -> Incoming | None:
        """The raw update, with the ids the parent gave it (the same on every redelivery)."""
        tg, user = self.tg, self.user(int(cmd["uid"]))
        op = cmd["op"]
        item: Incoming | None = None
        if op == "cmd":
            item = tg.command(user, str(cmd["name"]))
        elif op == "tap":
            item = tg.callback(user, str(cmd["data"]), message_id=cmd.get("mid") or 1)
            item.update.query_id = int(cmd["qid"])
        elif op == "photo":
            k = int(cmd["photo"])
            item = tg.photo(user, photo(k), size=(96, 96), media_id=int(cmd["media_id"]))
        elif op == "precheckout":
            item = tg.pre_checkout(user, payload=cmd["payload"], total_amount=cmd["amount"])
            item.update.query_id = int(cmd["qid"])
            self.queries[item.update.query_id] = user.id
        elif op == "pay":
            item = tg.payment(
                user, payload=cmd["payload"], total_amount=cmd["amount"], charge_id=cmd["charge"]
            )
        if item is not None and "id" in cmd:
            item.update.message.id = int(cmd["id"])
            item.update.message.date = int(cmd["date"])
            item.update.pts = int(cmd["pts"])
        return item

    def remember_stars(self, history: list[dict[str, Any]]) -> None:
        """Telegram's Stars history from before this incarnation of the offline Telegram."""
        stars = self.tg.server.stars
        for c in history:
            stars.add(str(c["charge"]), int(c["uid"]), int(c["stars"]), str(c["payload"]).encode())
            stars.charges[str(c["charge"])].date = int(c["date"])


def photo(k: int) -> bytes:
    """Photo number k: a colour and k's bits as stripes, so no two photos are alike, even after
    Flick re-encodes them (the campaign matches paid image edits to generations by content)."""
    image = Image.new("RGB", (96, 96), ((k * 67) % 256, (k * 151) % 256, 90))
    draw = ImageDraw.Draw(image)
    for bit in range(24):
        if k >> bit & 1:
            x = bit * 4
            draw.rectangle((x, 60, x + 3, 95), fill=(255, 255, 255))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def serve(cfg: dict[str, Any]) -> None:
    quiet_logging(cfg.get("log_level", "WARNING"))
    data_dir = Path(cfg["data_dir"])
    settings = bench_settings(
        data_dir,
        ai_concurrency=cfg["ai_concurrency"],
        send_rate=1000.0,
        free_credits=cfg["free_credits"],
        actor_idle_seconds=cfg.get("actor_idle_seconds", 300.0),
    )
    pipeline = PipelineConfig(
        poll_interval=cfg["poll_interval"],
        compose_budget=cfg["budget"],
        animate_budget=cfg["budget"],
        deliver_budget=cfg["budget"],
        starting_timeout=cfg["budget"],
    )
    storage = S3Storage(cfg["s3_endpoint"], cfg["s3_access_key"], cfg["s3_secret_key"],
                        cfg["s3_bucket"])  # fmt: skip
    image = OpenAIImageProvider(cfg["openai_key"], base_url=cfg["openai_url"], timeout=30.0)
    video = ReplicateVideoProvider(
        cfg["replicate_token"], model=cfg["video_model"], base_url=cfg["replicate_url"]
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async with storage, OfflineTelegram() as tg:
        # Telegram's message ids outlive a restart of the bot: each incarnation of the offline
        # Telegram continues where the last left off, so an id saved in a session (the style
        # picker) never names another chat's message in the new one.
        tg.server.message_ids = itertools.count(1 + int(cfg.get("incarnation", 0)) * 50_000)
        telegram = Telegram(tg, cfg["telegram_latency"])
        telegram.remember_stars(cfg.get("stars", []))
        # Production keeps kurigram's session (and its peer cache) in a file across restarts;
        # the offline client's is in memory, so it is told about the users again, as the file
        # would have. Without it a resumed video meets PEER_ID_INVALID: "the user is gone".
        known = [telegram.user(uid) for uid in cfg.get("uids", [])]
        if known:
            await tg.client.fetch_peers(known)
        gateway = TelegramGateway(
            tg.client, _not_yet, storage, send_rate=settings.send_rate,
            tmp_dir=data_dir / "tmp", publish_commands=False,
        )  # fmt: skip
        async with Flick(
            settings,
            gateway.outbox,
            image=image,
            video=video,
            pipeline=pipeline,
            database_url=cfg["database_url"],
            storage=storage,
            lock=True,  # the data-dir flock: a killed child's lock goes with its process
            resume=False,
        ) as app:
            gateway.adapter.dispatch = app.dispatch
            await gateway.start()
            # As `flick run` does: resume only once Telegram is up (resumed work sends messages),
            # and reconcile with Telegram's Stars history beside it.
            await app.resume_work()
            reconciling = asyncio.create_task(reconcile_at_start(app, tg.client))
            settle_heap()
            emit({"ev": "ready", "pid": os.getpid()})
            reader = asyncio.create_task(_read_commands(telegram, stop))
            admission = app.supervisor.admission
            async with SurgeFreeze(lambda: not admission.has_room()):
                await stop.wait()
            reader.cancel()
            reconciling.cancel()
            gateway.adapter.uninstall()
            await app.supervisor.stop(drain_seconds=5)
            await gateway.stop()
    emit({"ev": "stopped"})


async def _not_yet(event: Any) -> None:
    raise RuntimeError("the adapter is wired to Flick once the engine is up")


async def _read_commands(telegram: Telegram, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            incoming = telegram.incoming(json.loads(line))
            if incoming is not None:
                await inject(telegram.tg, incoming)
    finally:
        stop.set()  # the parent is gone (or said so): stop


def main() -> None:
    cfg = json.loads(os.environ["FLICK_FAULT_CHILD"])
    asyncio.run(serve(cfg))


if __name__ == "__main__":
    main()
