"""The Telegram side of the app in one piece: client, adapter, outbox, bot profile.

`async with TelegramGateway.from_settings(settings, supervisor.dispatch, storage) as tg:` connects
(within a time limit), publishes the command menu and gives the engine `tg.outbox`. A failure to
connect is one ServiceError line, with nothing left running behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from loguru import logger
from pyrogram import Client
from pyrogram.errors.rpc_error import RPCError
from pyrogram.storage import Storage as SessionStorage

from flick.errors import ServiceError
from flick.ports import Storage
from flick.settings import Settings
from flick.telegram.adapter import Dispatch, TelegramAdapter
from flick.telegram.client import build_client
from flick.telegram.diagnosis import (
    explain_refusal,
    key_error_constructor,
    protocol_mismatch,
    watching_protocol,
)
from flick.telegram.menu import set_commands
from flick.telegram.outbox import TelegramOutbox, error_id

DEFAULT_CONNECT_TIMEOUT: Final = 20.0
_NETWORK: Final = "the network connection to Telegram"


class TelegramGateway:
    def __init__(
        self,
        client: Client,
        dispatch: Dispatch,
        storage: Storage | None = None,
        *,
        send_rate: float = 30.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        tmp_dir: Path | None = None,
        publish_commands: bool = True,
    ) -> None:
        self.client = client
        self.adapter = TelegramAdapter(client, dispatch)
        self.outbox = TelegramOutbox(client, storage, rate=send_rate, tmp_dir=tmp_dir)
        self.connect_timeout = connect_timeout
        self.publish_commands = publish_commands
        self._owns_connection = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        dispatch: Dispatch,
        storage: Storage | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        session: SessionStorage | None = None,
    ) -> TelegramGateway:
        return cls(
            build_client(settings, session),
            dispatch,
            storage,
            send_rate=settings.send_rate,
            connect_timeout=connect_timeout,
            tmp_dir=settings.data_dir / "tmp",
        )

    async def start(self) -> None:
        # Handlers and outbox first: the first update may arrive the moment the client is up,
        # and the engine's answer to it needs a running outbox.
        self.adapter.install()
        await self.outbox.start()
        try:
            if not self.client.is_initialized:  # the offline test client is already running
                await connect(self.client, self.connect_timeout)
                self._owns_connection = True
            if self.publish_commands:
                await self._publish_commands()
        except BaseException:
            await self.outbox.stop()
            self.adapter.uninstall()
            raise
        me = self.client.me
        logger.info("connected to Telegram as @{}", getattr(me, "username", None))

    async def stop(self) -> None:
        await self.outbox.stop()
        if self._owns_connection and self.client.is_initialized:
            with contextlib.suppress(ConnectionError):
                await self.client.stop()
        self._owns_connection = False
        self.adapter.uninstall()

    async def __aenter__(self) -> TelegramGateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _publish_commands(self) -> None:
        # The menu is a nicety: a hiccup here must not keep the bot from answering.
        try:
            await asyncio.wait_for(set_commands(self.client), self.connect_timeout)
        except (RPCError, OSError, TimeoutError) as exc:
            logger.warning("could not publish the bot's command menu: {}", exc)


async def connect(client: Client, within: float) -> None:
    """Start `client` within `within` seconds, or raise ServiceError and leave nothing running.

    The line names the cause and what to do (flick.telegram.diagnosis): a network problem, a
    protocol layer this kurigram cannot read, a revoked token or a wrong API_ID/API_HASH.
    """
    before = asyncio.all_tasks()
    with watching_protocol() as watch:
        unread = watch.count
        try:
            await asyncio.wait_for(client.start(), within)
        except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
            await _abandon(client, before)
            if watch.count > unread:  # the answer came, in a form kurigram could not read
                raise protocol_mismatch(watch.constructor).error() from None
            raise ServiceError(
                f"cannot connect to Telegram: {_reason(exc, within)}", setting=_NETWORK
            ) from None
        except RPCError as exc:
            await _abandon(client, before)
            code = error_id(exc) or type(exc).__name__
            explained = explain_refusal(code, _session_file(client))
            if explained is not None:
                raise explained.error() from None
            raise ServiceError(
                f"Telegram refused the bot's login: {code}",
                setting="API_ID, API_HASH and BOT_TOKEN",
            ) from None
        except Exception as exc:  # noqa: BLE001 - e.g. garbage from a proxy during the handshake
            await _abandon(client, before)
            constructor = key_error_constructor(exc)
            if constructor is not None or watch.count > unread:
                raise protocol_mismatch(constructor or watch.constructor).error() from None
            raise ServiceError(
                f"cannot connect to Telegram: the connection broke during the handshake "
                f"({type(exc).__name__})",
                setting=_NETWORK,
            ) from None
        except BaseException:
            await _abandon(client, before)
            raise


def _session_file(client: Client) -> Path | None:
    if client.in_memory:
        return None
    return Path(client.workdir) / f"{client.name}.session"


def _reason(exc: BaseException, within: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {within:g} s"
    if type(exc) is ConnectionError and not str(exc):  # kurigram's "tried 3 times" carries no text
        return "the connection failed (network unreachable or refused)"
    return str(exc) or type(exc).__name__


async def _abandon(client: Client, before: set[asyncio.Task[Any]]) -> None:
    """Undo a half-done `client.start()`: its session, its storage, its background tasks."""
    if client.is_initialized:
        with contextlib.suppress(Exception):
            await client.stop()
    session = client.session
    if session is not None:
        # Stopping also ends the reconnect loop a session starts when the network is down.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.stop(), 5)
    client.session = None
    with contextlib.suppress(Exception):  # not open yet when the failure came first
        await client.storage.close()
    client.is_connected = False
    await _sweep(client, before)


async def _sweep(client: Client, before: set[asyncio.Task[Any]]) -> None:
    current = asyncio.current_task()
    stray = [
        task
        for task in asyncio.all_tasks() - before
        if task is not current and not task.done() and _works_for(task, client)
    ]
    if not stray:
        return
    _done, pending = await asyncio.wait(stray, timeout=3)
    for task in pending:
        task.cancel()
    await asyncio.gather(*stray, return_exceptions=True)


def _works_for(task: asyncio.Task[Any], client: Client) -> bool:
    """Whether `task` runs a method of `client` or of one of its sessions/dispatcher."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    owner = frame.f_locals.get("self") if frame is not None else None
    return owner is client or getattr(owner, "client", None) is client
