"""Migrations 0004 and 0007 create exactly the tables of ``gateway.admin.schema``, and 0007
fills the municipality register from the organisations already registered."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from gateway.admin.schema import metadata
from gateway.exchange.directory import RegisterDirectory
from gateway.store.database import Database
from gateway.store.migrate import downgrade, upgrade


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


def test_migration_0007_keeps_the_routing_of_organisations_registered_before_it(
    database: Database,
) -> None:
    """Each municipality goes to the first organisation (by id) that lists it, the one
    the exchange's directory chose before the register had a key."""
    downgrade(database.engine, "0006")
    try:
        rows = [
            ("varha", ["853", "202"]),
            ("aaa-duplicate", ["202"]),
            ("kela", []),
        ]
        with database.engine.begin() as conn:
            for org_id, codes in rows:
                conn.execute(
                    text(
                        "INSERT INTO admin_organization (id, name, org_type, identifiers, "
                        "municipalities, created_at, updated_at) "
                        "VALUES (:id, :id, 'wellbeing-area', '[]', :codes, 0, 0)"
                    ),
                    {"id": org_id, "codes": json.dumps(codes)},
                )
    finally:
        upgrade(database.engine)
    with database.read() as conn:
        directory = RegisterDirectory(conn)
        assert directory.wellbeing_area_for_municipality("853") == "varha"
        assert directory.wellbeing_area_for_municipality("202") == "aaa-duplicate"
        assert directory.wellbeing_area_for_municipality("091") is None
