"""`flick run`: settings → services → migrations → engine → Telegram; on a signal, the reverse.

Shutdown order matters: first stop taking updates, then let the engine drain its mailboxes and
park running generations at a resumable point (replies still go out), then close Telegram, and
last the engine's own services (database pool, storage, embedded servers).
"""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path
from typing import Any

from loguru import logger

from flick.app import Flick
from flick.models.ledger import pool
from flick.ops.health import HealthServer
from flick.ops.instruments import Instruments
from flick.ops.metrics import METRICS
from flick.ops.sentry import setup_sentry
from flick.private_files import exposures
from flick.settings import Settings
from flick.telegram.gateway import TelegramGateway


def settle_heap() -> None:
    """Move what start-up built (modules, SDK clients, styles, catalogs: about 250,000 objects)
    out of the collector's reach. Full collections walk only what the bot makes while serving:
    the longest pause under load went from about 290 ms to about 100 ms (BENCHMARKS.md)."""
    gc.collect()
    gc.freeze()


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    for exposure in exposures(Path(settings.data_dir)):
        logger.warning("{}; run `{}`", exposure, exposure.fix)
    setup_sentry(settings)
    instruments = Instruments(METRICS)
    engine: list[Flick] = []  # set once the engine runs; updates before that are dropped

    async def dispatch(event: Any) -> None:
        if engine:
            instruments.on_metric("update", {"kind": type(event).__name__}, 1)
            await engine[0].dispatch(event)

    gateway = TelegramGateway.from_settings(settings, dispatch, storage=None)  # type: ignore[arg-type]
    async with Flick(settings, gateway.outbox, instruments=instruments, resume=False) as app:
        assert app.storage is not None
        gateway.outbox.storage = app.storage
        engine.append(app)

        async def database() -> None:
            await pool().fetchval("SELECT 1")

        async def telegram() -> None:
            if not gateway.client.is_connected:
                raise ConnectionError("not connected to Telegram")

        checks = {"database": database, "storage": app.storage.check, "telegram": telegram}  # type: ignore[attr-defined]
        async with (
            HealthServer(settings.health_address, checks, METRICS),
            instruments.sampling(app.supervisor, app.limiter),
        ):
            await gateway.start()
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, app.reload_styles)
            # Only now: resumed work sends messages, and Telegram is connected.
            await app.resume_work()
            settle_heap()
            logger.info(
                "Flick is running (data dir {}, health {}); SIGINT or SIGTERM stops it",
                settings.data_dir,
                settings.health_address or "off",
            )
            try:
                await stop.wait()
            finally:
                logger.info("stopping: no new updates; draining the engine")
                gateway.adapter.uninstall()
                await app.supervisor.stop()
                await gateway.stop()
    logger.info("Flick stopped")
