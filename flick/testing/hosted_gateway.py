"""`flick run` as a real process whose Telegram is the test's `TelegramHub`, shared by every
gateway of a multi-host test (tests/hosts).

    TELEGRAM_HUB=host:port python -m flick.testing.hosted_gateway   (settings from the env)

As flick.testing.gateway_child, it runs `flick.runtime.serve` itself (election, engine, gateway,
fencing) on an offline Telegram, but one whose session is the production one
(SESSION_STORE=database, written through the lock connection) and whose updates come from the
hub. Once elected it connects to the hub, takes Telegram's memory (flick.testing.telegram.hub)
and does what kurigram's start does against Telegram: with no saved update state it saves the
current pts (updates.getState); then it catches up from the saved pts (recover_gaps →
getDifference) and takes live updates. Each message it sends or edits goes back to the hub.

Log lines go to stdout as "<unix time> <message>", among them "telegram: caught up on N
updates", "telegram: sent to <chat id>; reply" for each text but a generation's progress message
("...; progress": a gateway that takes over may start a fresh one, when the one before it died
before it saved its message's id), and "telegram: sent media to <chat id>;" for each video,
document or invoice, and "telegram: pre-checkout answered <query id> ok|error" for each answer
Telegram took (an error: the bot refused the order, with its reason). SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import sys
import time
from collections.abc import Coroutine
from functools import cache
from typing import Any

from loguru import logger
from pyrogram.storage import Storage, UpdateState

from flick.i18n import LANGUAGES, catalog
from flick.runtime import serve
from flick.settings import Settings
from flick.telegram.adapter import Dispatch
from flick.telegram.gateway import TelegramGateway
from flick.testing.telegram import OfflineTelegram, raw
from flick.testing.telegram.hub import (
    END,
    FILE,
    HISTORY,
    LIVE,
    MESSAGE,
    add_file,
    frame,
    read_frame,
    read_tl,
)
from flick.testing.telegram.server import TelegramServer
from flick.testing.telegram.wire import chat_of


@cache
def _progress_lines() -> re.Pattern[str]:
    """A generation's progress texts (the catalogs' `status_*`), in every language."""
    texts = [
        catalog(lang).texts[key]
        for lang in LANGUAGES
        for key in catalog(lang).texts
        if key.startswith("status_")
    ]
    # Each `{placeholder}` stands for any text.
    patterns = [
        "".join(
            re.escape(part) if i % 2 == 0 else ".*"
            for i, part in enumerate(re.split(r"(\{\w+\})", text))
        )
        for text in texts
    ]
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.DOTALL)


def is_progress_line(text: str) -> bool:
    return _progress_lines().fullmatch(text) is not None


class ReportingServer(TelegramServer):
    """The offline Telegram's answers; each message the bot sends is logged for the test, and
    each one it sends or edits is queued for the hub (`outgoing`: M frames)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.outgoing: asyncio.Queue[bytes] = asyncio.Queue()

    async def invoke(self, query: Any) -> Any:
        before = set(self.messages)
        result = await super().invoke(query)
        request = query.query if isinstance(query, raw.functions.InvokeWithoutUpdates) else query
        if isinstance(request, raw.functions.messages.SendMessage):
            kind = "progress" if is_progress_line(request.message) else "reply"
            logger.info("telegram: sent to {}; {}", chat_of(request), kind)
        elif isinstance(request, raw.functions.messages.SendMedia):
            logger.info("telegram: sent media to {};", chat_of(request))
        elif isinstance(request, raw.functions.messages.SetBotPrecheckoutResults):
            verdict = "ok" if request.success else "error"
            logger.info("telegram: pre-checkout answered {} {}", request.query_id, verdict)
        changed = [i for i in self.messages if i not in before]
        if isinstance(request, raw.functions.messages.EditMessage):
            changed.append(request.id)
        for message_id in changed:
            self.outgoing.put_nowait(frame(MESSAGE, self.messages[message_id].write()))
        return result


class HubGateway(TelegramGateway):
    def __init__(self, tg: OfflineTelegram, hub: str, settings: Settings, dispatch: Dispatch):
        super().__init__(
            tg.client,
            dispatch,
            send_rate=settings.send_rate,
            tmp_dir=settings.data_dir / "tmp",
            publish_commands=False,
        )
        self.tg = tg
        self.server = ReportingServer(tg.bot)
        tg.server = self.server
        self.hub = hub
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.tg.open()
        host, port = self.hub.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        pts = await self._remember(reader)  # before any send: the bot's message ids are set
        await super().start()  # handlers installed: now updates may come
        self._tasks = [
            asyncio.create_task(_logged(self._follow(reader, pts))),
            asyncio.create_task(_logged(self._report(writer))),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()
        await self.tg.close()  # kurigram's terminate: the update state is saved

    async def _remember(self, reader: asyncio.StreamReader) -> int:
        """Take the hub's memory (updates for getDifference, files, the bot's messages) up to
        its end; the current pts."""
        while True:
            kind, payload = await read_frame(reader)
            if kind == END:
                pts, first_id = map(int, payload.split())
                self.server.message_ids = itertools.count(first_id)
                return pts
            self._take(kind, payload)

    def _take(self, kind: bytes, payload: bytes) -> Any:
        if kind == FILE:
            add_file(self.server.files, payload)
            return None
        item = read_tl(payload)
        if kind == MESSAGE:
            self.server.messages[item.id] = item
            return None
        if kind not in (HISTORY, LIVE):
            raise ValueError(f"unknown frame {kind!r}")
        self.server.redelivery.record(item)  # this Telegram's memory, for getDifference
        self.server.users.update({u.id: u for u in item.users})
        return item

    async def _follow(self, reader: asyncio.StreamReader, pts: int) -> None:
        storage: Any = self.tg.client.storage  # kurigram's Storage is unannotated
        if not await storage.get_update_states(0):  # kurigram's start: updates.getState
            await storage.set_update_state(UpdateState(0, pts, 0, int(time.time()), 0))
            await storage.save()
        client: Any = self.tg.client
        found = await client.recover_gaps()  # getDifference from the saved pts; saves
        await self.tg.catch_up()  # waits for the handlers (nothing is left to fetch)
        logger.info("telegram: caught up on {} updates", sum(found))
        while True:
            kind, payload = await read_frame(reader)
            updates = self._take(kind, payload)
            if kind == LIVE:
                await self.tg.push_raw(updates)

    async def _report(self, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                writer.write(await self.server.outgoing.get())
                await writer.drain()
        finally:
            writer.close()


async def _logged(work: Coroutine[Any, Any, None]) -> None:
    try:
        await work
    except (asyncio.IncompleteReadError, OSError) as exc:
        logger.warning("telegram: the hub is gone ({!r})", exc)
    except Exception:  # noqa: BLE001 - a task's error is seen nowhere else: the test's log
        logger.exception("telegram: following the hub failed")


async def main() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    hub = os.environ["TELEGRAM_HUB"]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    def hosted_gateway(
        settings: Settings, dispatch: Dispatch, *, session: Storage | None = None
    ) -> TelegramGateway:
        return HubGateway(OfflineTelegram(session=session), hub, settings, dispatch)

    await serve(settings, stop, hosted_gateway)


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stdout, format="{time:X.SSS} {message}", level="INFO")
    asyncio.run(main())
