"""Migration 0004 creates exactly the tables of ``gateway.admin.schema``."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.admin.schema import metadata
from gateway.store.database import Database


def test_migration_matches_the_admin_metadata(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    admin_tables = set(metadata.tables)
    relevant = [
        d
        for d in diff
        if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name not in admin_tables)
        and not (
            isinstance(d, tuple) and d[0] == "remove_index" and d[1].table.name not in admin_tables
        )
    ]
    assert relevant == []
