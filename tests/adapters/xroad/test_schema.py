"""Migration 0006 creates exactly the tables of the X-Road channel and the outbox."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from adapters.xroad.schema import metadata as xroad_metadata
from gateway.outbox.schema import metadata as outbox_metadata
from gateway.store.database import Database


@pytest.mark.parametrize("metadata", [xroad_metadata, outbox_metadata], ids=["xroad", "outbox"])
def test_migration_matches_the_metadata(database: Database, metadata: MetaData) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    own = set(metadata.tables)
    relevant = [
        d
        for d in diff
        if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name not in own)
        and not (isinstance(d, tuple) and d[0] == "remove_index" and d[1].table.name not in own)
    ]
    assert relevant == []
