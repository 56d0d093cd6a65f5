"""`flick doctor`: one line per part of Flick, and what to do when it fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from flick.errors import ConfigError, ServiceError
from flick.settings import Settings

Check = tuple[str, Callable[[], Awaitable[str]], str]


async def doctor(settings: Settings, telegram: bool = True) -> int:
    """Run every check; returns 0 when all pass, 1 otherwise."""
    from flick.app import build_image_provider, build_video_provider, check_providers
    from flick.embedded import EmbeddedPostgres, EmbeddedSeaweed, prepare_data_dir
    from flick.models import db, migrations
    from flick.private_files import exposures
    from flick.storage import S3Storage

    failures = 0

    def line(ok: bool, name: str, detail: str, fix: str = "") -> None:
        nonlocal failures
        mark = "ok  " if ok else "FAIL"
        failures += not ok
        print(f"[{mark}] {name}: {detail}" + ("" if ok or not fix else f" — {fix}"))

    try:
        check_providers(settings)
        line(True, "settings", "loaded")
    except ConfigError as exc:
        line(
            False, "settings", "; ".join(f"{n} {p}" for n, p, _ in exc.problems), "see .env.example"
        )

    # Before the embedded services start: they would make their own files private again.
    exposed = exposures(Path(settings.data_dir))
    for exposure in exposed:
        line(False, "files", str(exposure), exposure.fix)
    if not exposed:
        line(True, "files", "the data directory, the session and other secrets are private")

    database_down = False
    async with AsyncExitStack() as stack:
        data_dir = prepare_data_dir(Path(settings.data_dir))
        try:
            if settings.database_url is None:
                pg = await stack.enter_async_context(EmbeddedPostgres(data_dir))
                url = pg.url
            else:
                url = settings.database_url.get_secret_value()
            await stack.enter_async_context(db.connection_pool(url, 1, 2))
            todo = await migrations.pending()
            if todo and settings.database_url is not None:
                line(
                    False,
                    "database",
                    f"reachable, {len(todo)} migration(s) pending",
                    f"run `{migrations.COMMAND}`",
                )
            else:
                line(
                    True,
                    "database",
                    "reachable, schema current"
                    if not todo
                    else f"embedded; Flick applies {len(todo)} migration(s) at start",
                )
        except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
            line(False, "database", str(exc), "check DATABASE_URL")
            database_down = True

        try:
            if settings.s3_endpoint is None:
                weed = await stack.enter_async_context(EmbeddedSeaweed(data_dir))
                storage = S3Storage.from_settings(
                    settings,
                    endpoint=weed.endpoint,
                    access_key=weed.access_key,
                    secret_key=weed.secret_key,
                )
            else:
                storage = S3Storage.from_settings(settings)
            await stack.enter_async_context(storage)
            await storage.check()
            line(True, "storage", f"bucket {settings.s3_bucket} ready and private")
        except Exception as exc:  # noqa: BLE001
            line(False, "storage", str(exc), "check S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY")

        for name, build, fix in (
            ("image provider", build_image_provider, "check OPENAI_API_KEY / OPENAI_BASE_URL"),
            (
                "video provider",
                build_video_provider,
                "check REPLICATE_API_TOKEN / REPLICATE_BASE_URL",
            ),
        ):
            try:
                provider: Any = build(settings)
                if hasattr(provider, "__aexit__"):
                    await stack.enter_async_context(provider)
                await provider.check()
                line(True, name, f"{provider.name} answers")
            except Exception as exc:  # noqa: BLE001
                line(False, name, str(exc) or type(exc).__name__, fix)

        # Inside the stack: with SESSION_STORE=database the session is read through the pool.
        if telegram:
            if settings.missing_for_telegram():
                line(False, "telegram", "credentials not set", "set API_ID, API_HASH and BOT_TOKEN")
            elif database_down and settings.session_store == "database":
                line(
                    False,
                    "telegram",
                    "not checked: the session is in the database (SESSION_STORE=database)",
                    "fix the database first",
                )
            else:
                try:
                    from flick.telegram.client import build_client, stop_one_off
                    from flick.telegram.gateway import connect

                    client = build_client(settings, one_off=True)
                    await connect(client, 20.0)
                    try:
                        me = client.me
                        line(True, "telegram", f"logged in as @{getattr(me, 'username', '?')}")
                    finally:
                        await stop_one_off(client)
                except ServiceError as exc:  # connect() names the cause and what to do
                    line(False, "telegram", str(exc))
                except Exception as exc:  # noqa: BLE001
                    line(
                        False, "telegram", str(exc), "check BOT_TOKEN, API_ID, API_HASH and network"
                    )

    return 1 if failures else 0
