from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-30T18:41:10:000000"
VERSION = "1.38.0"
DESCRIPTION = "constraints: refunded exactly when failed or canceled; unique request and update ids"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="flick", description=DESCRIPTION)

    # What the column definitions cannot say. A generation is refunded exactly when it ended
    # failed or canceled: the database itself refuses "delivered and refunded".
    manager.add_raw(_CONSTRAINTS)
    return manager

async def _CONSTRAINTS() -> None:  # noqa: N802 - Piccolo's raw step
    from flick.models.db import DB

    await DB.run_ddl(
        "UPDATE generations SET status = 'failed', finished_at = COALESCE(finished_at, now()) "
        "WHERE refunded AND status NOT IN ('failed', 'canceled')"
    )
    await DB.run_ddl(
        "ALTER TABLE generations ADD CONSTRAINT generations_refunded_iff_not_delivered "
        "CHECK (refunded = (status IN ('failed', 'canceled')))"
    )
    await DB.run_ddl(
        'CREATE UNIQUE INDEX generations_user_request_key ON generations ("user", request_key)'
    )
    await DB.run_ddl(
        'CREATE UNIQUE INDEX handled_updates_user_event ON handled_updates ("user", event_id)'
    )
    await DB.run_ddl("CREATE INDEX users_username_lower ON users (lower(username))")

