"""The `flick` command: run, chat, services, doctor, payments reconcile, affiliate."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from loguru import logger

from flick.errors import ConfigError, FlickError
from flick.settings import Settings, load_settings


def _setup_logging(settings: Settings) -> None:
    try:
        from flick.ops.logging import setup_logging
    except ImportError:  # pragma: no cover - during early development
        return
    setup_logging(settings)


async def _until_signal(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await work(stop)


async def _run(settings: Settings) -> None:
    from flick.runtime import serve

    await _until_signal(lambda stop: serve(settings, stop))


async def _worker(settings: Settings) -> None:
    from flick.worker import serve_worker

    await _until_signal(lambda stop: serve_worker(settings, stop))


async def _services(settings: Settings) -> None:
    from flick.embedded import DataDirLock, EmbeddedPostgres, EmbeddedSeaweed, prepare_data_dir

    data_dir = prepare_data_dir(Path(settings.data_dir))
    with DataDirLock(data_dir):
        async with EmbeddedPostgres(data_dir) as pg, EmbeddedSeaweed(data_dir) as weed:
            print(f"postgres: {pg.url}")
            print(f"s3:       http://{weed.endpoint} (key in {data_dir / 'seaweed'})")
            print("Ctrl-C stops both.")
            sys.stdout.flush()
            await _until_signal(lambda stop: stop.wait())  # type: ignore[arg-type,return-value]


async def _chat(settings: Settings, out_dir: Path) -> None:
    from flick.playground import chat

    await chat(settings, out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flick", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot (needs API_ID, API_HASH, BOT_TOKEN and AI keys)")
    sub.add_parser(
        "worker",
        help="run generation steps only, beside a gateway (needs its DATABASE_URL, S3 and AI keys)",
    )
    chat = sub.add_parser("chat", help="talk to the engine in this terminal (offline by default)")
    chat.add_argument("--out", type=Path, default=Path("chat-out"), help="where videos are saved")
    sub.add_parser("services", help="start only the embedded PostgreSQL and SeaweedFS")
    sub.add_parser("doctor", help="check settings, database, storage, providers and Telegram")
    pay = sub.add_parser("payments", help="payment tools")
    pay_sub = pay.add_subparsers(dest="payments_command", required=True)
    pay_sub.add_parser("reconcile", help="credit Stars charges that never reached the bot")
    aff = sub.add_parser(
        "affiliate",
        help="Telegram's affiliate program for the bot (signs in as the bot's owner)",
    )
    aff.add_argument("--bot", help="the bot's @username (default: BOT_USERNAME)")
    aff_sub = aff.add_subparsers(dest="affiliate_command", required=True)
    aff_sub.add_parser("show", help="the current program")
    aff_set = aff_sub.add_parser("set", help="start or raise the program")
    aff_set.add_argument("permille", type=int, help="commission per mille, e.g. 100 for 10%%")
    aff_set.add_argument("--months", type=int, help="how long affiliates earn (default: no end)")
    aff_sub.add_parser("end", help="end the program")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
        _setup_logging(settings)
        if args.command == "run":
            settings.require_telegram()
            from flick.app import check_providers

            check_providers(settings)
            asyncio.run(_run(settings))
        elif args.command == "worker":
            from flick.app import check_providers

            check_providers(settings)
            asyncio.run(_worker(settings))
        elif args.command == "chat":
            if settings.openai_api_key is None and "IMAGE_PROVIDER" not in _env():
                settings = settings.model_copy(update={"image_provider": "local"})
            if settings.replicate_api_token is None and "VIDEO_PROVIDER" not in _env():
                settings = settings.model_copy(update={"video_provider": "local"})
            from flick.app import check_providers

            check_providers(settings)
            asyncio.run(_chat(settings, args.out))
        elif args.command == "services":
            asyncio.run(_services(settings))
        elif args.command == "doctor":
            from flick.doctor import doctor

            return asyncio.run(doctor(settings))
        elif args.command == "payments":
            settings.require_telegram()
            from flick.runtime import reconcile_command

            return asyncio.run(reconcile_command(settings))
        elif args.command == "affiliate":
            from flick.runtime import affiliate_command

            return asyncio.run(
                affiliate_command(
                    settings,
                    args.affiliate_command,
                    args.bot,
                    getattr(args, "permille", 0),
                    getattr(args, "months", None),
                )
            )
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except FlickError as exc:
        print(f"flick: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _env() -> set[str]:
    import os

    return {k.upper() for k in os.environ}


if __name__ == "__main__":  # pragma: no cover
    logger.remove()
    raise SystemExit(main())
