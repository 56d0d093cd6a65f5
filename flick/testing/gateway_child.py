"""`flick run` as a real process on the offline Telegram, for the standby tests.

    python -m flick.testing.gateway_child      (settings from the environment, as flick run)

It runs `flick.runtime.serve` itself (the election, the engine, the gateway, fencing), with the
offline Telegram (flick.testing.telegram) in place of the network: each process has its own, so
Telegram's redelivery between them is not played. Log lines go to stdout as
"<unix time> <message>", so a test can order what two processes did. SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from loguru import logger

from flick.runtime import serve
from flick.settings import Settings
from flick.telegram.adapter import Dispatch
from flick.telegram.gateway import TelegramGateway
from flick.testing.telegram import OfflineTelegram


async def main() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with OfflineTelegram() as tg:

        def offline_gateway(
            settings: Settings, dispatch: Dispatch, *, session: object = None
        ) -> TelegramGateway:
            # The offline client keeps its session in memory: `session` has nothing to hold.
            return TelegramGateway(
                tg.client,
                dispatch,
                send_rate=settings.send_rate,
                tmp_dir=settings.data_dir / "tmp",
                publish_commands=False,
            )

        await serve(settings, stop, offline_gateway)


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stdout, format="{time:X.SSS} {message}", level="INFO")
    asyncio.run(main())
