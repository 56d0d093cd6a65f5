"""The committed migrations and the Piccolo models describe the same schema."""

from __future__ import annotations

from piccolo.apps.migrations.commands.new import AutoMigrationManager

from flick.models import db, migrations
from flick.models.piccolo_app import APP_CONFIG
from flick.models.tables import TABLES


async def test_models_need_no_new_migration() -> None:
    statements = await AutoMigrationManager(auto_input="y").get_alter_statements(APP_CONFIG)
    pending = [s for group in statements for s in group.statements]
    assert pending == [], f"models changed without a migration: {pending}"


async def test_forwards_on_an_empty_database_builds_every_table_and_column(
    database_url: str,
) -> None:
    async with db.connection_pool(database_url, 1, 2) as engine:
        await migrations.apply()
        assert await migrations.pending() == []
        assert engine.pool is not None
        for table in TABLES:
            rows = await engine.pool.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
                table._meta.tablename,
            )
            in_db = {r["column_name"] for r in rows}
            in_model = {c._meta.db_column_name for c in table._meta.columns}
            assert in_db == in_model, table._meta.tablename
