from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-01T00:48:40:000000"
VERSION = "1.38.0"
DESCRIPTION = "telegram session tables: one row per (session, id)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="flick", description=DESCRIPTION)

    # What the column definitions cannot say; the session storage's upserts rely on these.
    manager.add_raw(_KEYS)
    return manager


async def _KEYS() -> None:  # noqa: N802 - Piccolo's raw step
    from flick.models.db import DB

    await DB.run_ddl(
        "CREATE UNIQUE INDEX telegram_peers_session_peer ON telegram_peers (session, peer_id)"
    )
    await DB.run_ddl(
        "CREATE UNIQUE INDEX telegram_usernames_session_name "
        "ON telegram_usernames (session, username, peer_id)"
    )
    await DB.run_ddl(
        "CREATE INDEX telegram_usernames_session_peer ON telegram_usernames (session, peer_id)"
    )
    await DB.run_ddl(
        "CREATE INDEX telegram_peers_session_phone ON telegram_peers (session, phone_number)"
    )
    await DB.run_ddl(
        "CREATE UNIQUE INDEX telegram_update_states_session_state "
        "ON telegram_update_states (session, state_id)"
    )
