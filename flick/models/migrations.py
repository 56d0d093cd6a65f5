"""Schema migrations, programmatically: what is pending, and applying it."""

from __future__ import annotations

import contextlib
import io

from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration

from flick.errors import ServiceError
from flick.models.piccolo_app import APP_CONFIG

COMMAND = "piccolo migrations forwards all"


async def pending() -> list[str]:
    manager = BaseMigrationManager()
    modules = manager.get_migration_modules(APP_CONFIG.resolved_migrations_folder_path)
    known = manager.get_migration_ids(modules)
    ran: list[str] = []
    if await Migration.table_exists().run():
        ran = await Migration.get_migrations_which_ran(app_name=APP_CONFIG.app_name)
    return [m for m in known if m not in ran]


async def apply() -> list[str]:
    """Apply every pending migration; returns their ids. Piccolo's chatter goes nowhere."""
    todo = await pending()
    if todo:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            result = await run_forwards(app_name="all")
        if not result.success:
            raise ServiceError(f"migrations failed: {result.message or out.getvalue()[-500:]}")
    return todo


async def require_current() -> None:
    """With an external database, the operator runs migrations; refuse to run on an old schema."""
    todo = await pending()
    if todo:
        raise ServiceError(
            f"the database schema is behind by {len(todo)} migration(s); run `{COMMAND}` "
            "with the same DATABASE_URL, then start Flick again",
            setting="DATABASE_URL",
        )
