"""Batched inserts of the store's fixed statements."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gateway.store.database import Database
from gateway.store.raw import SQLITE_CHUNK, RawExecutor
from gateway.store.schema import sp_token


@pytest.mark.parametrize("count", [1, SQLITE_CHUNK, 2 * SQLITE_CHUNK + 5])
def test_insert_rows_stores_every_row_in_order(database: Database, count: int) -> None:
    rows = [
        {
            "resource_pk": n,
            "res_type": "Patient",
            "param": "identifier",
            "system": "urn:oid:1.2.246.21",
            "code": f"code-{n:04d}",
            "text": None,
        }
        for n in range(count)
    ]
    with database.write() as conn:
        RawExecutor.of(conn).insert_rows(sp_token, rows)
    with database.read() as conn:
        stored = conn.execute(
            select(sp_token.c.resource_pk, sp_token.c.code).order_by(sp_token.c.resource_pk)
        ).all()
    assert [(pk, code) for pk, code in stored] == [(r["resource_pk"], r["code"]) for r in rows]
