"""`flick run` as a real process whose Telegram is the test's `TelegramHub`, shared by every
gateway of a multi-host test (tests/hosts).

    TELEGRAM_HUB=host:port python -m flick.testing.hosted_gateway   (settings from the env)

As flick.testing.gateway_child, it runs `flick.runtime.serve` itself (election, engine, gateway,
fencing) on an offline Telegram, but one whose session is the production one
(SESSION_STORE=database, written through the lock connection) and whose updates come from the
hub. Once elected and started it connects to the hub and does what kurigram's start does against
Telegram: with no saved update state it saves the current pts (updates.getState); then it
catches up from the saved pts (recover_gaps → getDifference) and takes live updates.

Log lines go to stdout as "<unix time> <message>", among them "telegram: caught up on N
updates" and "telegram: sent to <chat id>;" for each message sent. SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Any

from loguru import logger
from pyrogram.storage import Storage, UpdateState

from flick.runtime import serve
from flick.settings import Settings
from flick.telegram.adapter import Dispatch
from flick.telegram.gateway import TelegramGateway
from flick.testing.telegram import OfflineTelegram, raw
from flick.testing.telegram.hub import END, HISTORY, LIVE, read_frame, read_updates
from flick.testing.telegram.server import TelegramServer
from flick.testing.telegram.wire import chat_of


class ReportingServer(TelegramServer):
    """The offline Telegram's answers, each message the bot sends logged for the test."""

    async def invoke(self, query: Any) -> Any:
        result = await super().invoke(query)
        request = query.query if isinstance(query, raw.functions.InvokeWithoutUpdates) else query
        if isinstance(request, raw.functions.messages.SendMessage):
            logger.info("telegram: sent to {};", chat_of(request))
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
        self.hub = hub
        self._link: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.tg.open()
        await super().start()  # handlers installed: now updates may come
        self._link = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._link is not None:
            self._link.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._link
        await super().stop()
        await self.tg.close()  # kurigram's terminate: the update state is saved

    async def _follow(self) -> None:
        try:
            await self._follow_hub()
        except (asyncio.IncompleteReadError, OSError) as exc:
            logger.warning("telegram: the hub is gone ({!r})", exc)
        except Exception:  # noqa: BLE001 - a task's error is seen nowhere else: the test's log
            logger.exception("telegram: following the hub failed")

    async def _follow_hub(self) -> None:
        host, port = self.hub.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        storage: Any = self.tg.client.storage  # kurigram's Storage is unannotated
        try:
            while True:
                kind, payload = await read_frame(reader)
                if kind == END:
                    if not await storage.get_update_states(0):  # kurigram's start
                        now = int(time.time())
                        await storage.set_update_state(UpdateState(0, int(payload), 0, now, 0))
                        await storage.save()
                    client: Any = self.tg.client
                    found = await client.recover_gaps()
                    await self.tg.catch_up()  # waits for the handlers (nothing left to fetch)
                    logger.info("telegram: caught up on {} updates", sum(found))
                    continue
                updates = read_updates(payload)
                self.tg.server.redelivery.record(updates)  # this Telegram's memory
                self.tg.server.users.update({u.id: u for u in updates.users})
                if kind == LIVE:
                    await self.tg.push_raw(updates)
                elif kind != HISTORY:
                    raise ValueError(f"unknown frame {kind!r}")
        finally:
            writer.close()


async def main() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    hub = os.environ["TELEGRAM_HUB"]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    def hosted_gateway(
        settings: Settings, dispatch: Dispatch, *, session: Storage | None = None
    ) -> TelegramGateway:
        tg = OfflineTelegram(session=session)
        tg.server = ReportingServer(tg.bot)
        return HubGateway(tg, hub, settings, dispatch)

    await serve(settings, stop, hosted_gateway)


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stdout, format="{time:X.SSS} {message}", level="INFO")
    asyncio.run(main())
