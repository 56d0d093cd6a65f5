"""`flick run`: settings → services → migrations → engine → Telegram; on a signal, the reverse.

Shutdown order matters: first stop taking updates, then let the engine drain its mailboxes and
park running generations at a resumable point (replies still go out), then close Telegram, and
last the engine's own services (database pool, storage, embedded servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

from loguru import logger
from pyrogram.storage import Storage as SessionStorage

from flick.app import Flick
from flick.models.db import pool
from flick.ops.collector import SurgeFreeze, settle_heap
from flick.ops.health import HealthServer
from flick.ops.instruments import Instruments
from flick.ops.metrics import METRICS
from flick.ops.sentry import setup_sentry
from flick.ops.standby_health import standby_health
from flick.payments.reconcile import Report
from flick.private_files import exposures
from flick.settings import Settings
from flick.telegram.adapter import Dispatch
from flick.telegram.affiliate import AffiliateError, current_program, set_program
from flick.telegram.client import (
    Client,
    build_client,
    build_owner_client,
    session_name,
    session_storage,
    stop_one_off,
)
from flick.telegram.gateway import TelegramGateway, connect
from flick.telegram.leadership import Leadership, lock_key
from flick.telegram.outbox import TelegramOutbox
from flick.telegram.stars import star_transactions


async def reconcile_at_start(app: Flick, client: Client) -> Report | None:
    """Credit Stars charges that never reached us (a payment update lost while Flick was down,
    or while the database was): nobody has to run `flick payments reconcile` by hand."""
    try:
        # Neither flag: Telegram lists purchases and refunds alike.
        transactions = await star_transactions(client, inbound=False, outbound=False)
        report = await app.reconcile(transactions)
    except Exception as exc:  # noqa: BLE001 - the bot runs on; the next start tries again
        logger.warning("start-up reconciliation with Telegram's Stars history failed: {}", exc)
        return None
    if report.missing:
        logger.warning("reconciliation: {} charge(s) to credit", len(report.missing))
    return report


async def reconcile_command(settings: Settings) -> int:
    """`flick payments reconcile`: the same as at start-up, on demand, then stop. It may run
    while a gateway serves: its client borrows the stored session and takes no updates."""
    client = build_client(settings, one_off=True)
    outbox = TelegramOutbox(client, rate=settings.send_rate)
    report = None
    async with outbox, Flick(settings, outbox, resume=False) as app:
        outbox.storage = app.storage
        try:
            # After the engine's services: with SESSION_STORE=database the session is read
            # through the database pool.
            await connect(client, 30.0)
            report = await reconcile_at_start(app, client)
        finally:
            await app.supervisor.stop()
            await stop_one_off(client)
    for line in report.lines() if report else ["reconciliation failed: see the log"]:
        print(line)
    return 0 if report else 1


async def affiliate_command(
    settings: Settings, action: str, bot: str | None, permille: int = 0, months: int | None = None
) -> int:
    """`flick affiliate show|set|end`: Telegram's affiliate program for the bot, changed as its
    owner (Telegram does not let a bot change its own). The first run signs the owner in."""
    bot = bot or settings.bot_username
    if not bot:
        print("flick: name the bot: --bot @username, or set BOT_USERNAME", file=sys.stderr)
        return 2
    client = build_owner_client(settings)
    await client.start()  # asks for the phone number and login code the first time
    try:
        return await affiliate(client, action, bot, permille, months)
    finally:
        await client.stop()


async def affiliate(
    client: Client, action: str, bot: str, permille: int = 0, months: int | None = None
) -> int:
    """The affiliate command on a signed-in client: prints what Telegram now has."""
    try:
        if action == "show":
            program = await current_program(client, bot)
        else:
            program = await set_program(client, bot, permille if action == "set" else 0, months)
    except AffiliateError as exc:
        print(f"flick: {exc}", file=sys.stderr)
        return 1
    if program is None or (program.permille == 0 and program.ends is None):
        print(f"@{bot.lstrip('@')} has no affiliate program")
    else:
        print(f"@{bot.lstrip('@')}: {program.describe()}")
    return 0


#: After losing the gateway lock, stand for election only after this long: a standby trying
#: every second has taken it by then, and the process that just lost its connection is the
#: likelier of the two to lose it again.
REELECT_AFTER = 3.0


class GatewayFactory(Protocol):
    """How `flick run` gets its Telegram side: `TelegramGateway.from_settings`; tests give one on
    the offline Telegram."""

    def __call__(
        self, settings: Settings, dispatch: Dispatch, *, session: SessionStorage | None
    ) -> TelegramGateway: ...


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    make_gateway: GatewayFactory = TelegramGateway.from_settings,
) -> None:
    for exposure in exposures(Path(settings.data_dir)):
        logger.warning("{}; run `{}`", exposure, exposure.fix)
    setup_sentry(settings)
    instruments = Instruments(METRICS)
    if settings.database_url is None:
        # The embedded PostgreSQL is this process's own (the data directory's lock keeps any
        # other out), so no other gateway can share it: nothing to elect.
        await serve_engine(settings, stop, instruments, None, make_gateway)
        return
    settings.require_telegram()
    assert settings.bot_token is not None  # require_telegram
    key = lock_key(session_name(settings.bot_token.get_secret_value()))
    url = settings.database_url.get_secret_value()
    lead = Leadership(url, key)  # a database unreachable at start is an error, as without it
    while not stop.is_set():
        try:
            # Until it leads, /healthz says "standby" (200): a waiting standby is healthy.
            async with standby_health(settings.health_address, url, METRICS):
                won = await _until(lead.acquire(), stop)
            if won:
                if lead.waited and settings.session_store == "file":
                    logger.warning(
                        "taking over with this host's own session file (SESSION_STORE=file): "
                        "updates since its last run may be missed; set SESSION_STORE=database"
                    )
                await serve_engine(settings, stop, instruments, lead, make_gateway)
        except ConnectionError as exc:  # lost while taking it: elect again
            logger.warning("gateway election: {}", exc)
        finally:
            await lead.release()
        if not stop.is_set():
            # A standby whose connection held has waited all along: it goes first.
            logger.warning("electing again in {:g} s", REELECT_AFTER)
            await _until(asyncio.sleep(REELECT_AFTER), stop)
            lead = Leadership(url, key, wait_for_database=True)


async def _until(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `work` unless `stop` comes first; whether it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True


async def serve_engine(
    settings: Settings,
    stop: asyncio.Event,
    instruments: Instruments,
    lead: Leadership | None,
    make_gateway: GatewayFactory,
) -> None:
    """The engine and the Telegram session, until `stop` or, under an election, until `lead` is
    lost: then updates stop at once (fencing) and the engine drains as on a stop."""
    engine: list[Flick] = []  # set once the engine runs; updates before that are dropped

    async def dispatch(event: Any) -> None:
        if engine and (lead is None or lead.active):
            instruments.on_metric("update", {"kind": type(event).__name__}, 1)
            await engine[0].dispatch(event)

    # With SESSION_STORE=database, written through the lock connection: a gateway that lost
    # the lock cannot write it.
    session = session_storage(settings, executor=(lambda: lead) if lead is not None else pool)
    gateway = make_gateway(settings, dispatch, session=session)
    if lead is not None:
        lead.on_lost(gateway.adapter.uninstall)
    async with Flick(settings, gateway.outbox, instruments=instruments, resume=False) as app:
        assert app.storage is not None
        gateway.outbox.storage = app.storage
        engine.append(app)
        gateway.adapter.hold_new_users(app.supervisor)

        async def database() -> None:
            await pool().fetchval("SELECT 1")

        async def telegram() -> None:
            if not gateway.client.is_connected:
                raise ConnectionError("not connected to Telegram")

        checks = {"database": database, "storage": app.storage.check, "telegram": telegram}  # type: ignore[attr-defined]
        role = {"gateway": "active"} if lead is not None else None  # elected: say which
        async with (
            HealthServer(settings.health_address, checks, METRICS, notes=role),
            instruments.sampling(app.supervisor, app.limiter),
        ):
            if lead is not None and lead.lost.is_set():  # fenced while the engine started
                raise ConnectionError("lost the gateway lock while starting")
            await gateway.start()
            if app.supervisor.ctx.bot_username is None:  # for invite and promo links
                app.supervisor.ctx.bot_username = getattr(gateway.client.me, "username", None)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, app.reload_styles)
            # Only now: resumed work sends messages, and Telegram is connected.
            await app.resume_work()
            reconciling = asyncio.create_task(reconcile_at_start(app, gateway.client))
            settle_heap()
            logger.info(
                "Flick is running (data dir {}, health {}); SIGINT or SIGTERM stops it",
                settings.data_dir,
                settings.health_address or "off",
            )
            admission = app.supervisor.admission
            try:
                # By then the surge's actors have stopped; at least a minute, so that a short
                # dip below capacity is not taken for the end of a surge.
                quiet = max(60.0, 2 * settings.actor_idle_seconds)
                async with SurgeFreeze(lambda: not admission.has_room(), quiet_seconds=quiet):
                    await _until(_lost(lead), stop)
            finally:
                reconciling.cancel()
                gateway.adapter.uninstall()
                if lead is not None and lead.lost.is_set():
                    # Fenced: a standby may be starting and will resume every unfinished
                    # generation within seconds. Stop like a SIGKILL (which Flick recovers
                    # from), not like a drain (up to 30 s, a paid step finishing meanwhile).
                    logger.warning("stopping at once: no new updates, generations cancelled")
                    await app.supervisor.stop(drain_seconds=0.0)
                else:
                    logger.info("stopping: no new updates; draining the engine")
                    await app.supervisor.stop()
                await gateway.stop()
    logger.info("Flick stopped")


async def _lost(lead: Leadership | None) -> None:
    if lead is None:
        await asyncio.Event().wait()  # never: only a stop ends an unelected run
    else:
        await lead.lost.wait()
