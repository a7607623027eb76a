"""Batched inserts of the store's fixed statements."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gateway.audit.schema import audit_entry
from gateway.store.database import Database
from gateway.store.raw import SQLITE_CHUNK, RawExecutor, json_column
from gateway.store.schema import sp_token


@pytest.mark.parametrize("count", [1, SQLITE_CHUNK, 2 * SQLITE_CHUNK + 5, 1000])
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


def test_insert_values_takes_json_columns_as_their_text(database: Database) -> None:
    columns = [c.name for c in audit_entry.columns]
    rows = [
        {
            "seq": n,
            "at": 1_700_000_000_000_000 + n,
            "kind": "fhir",
            "action": "read",
            "outcome": "success",
            "client_id": None,
            "organization": "pirha",
            "user_id": 'Maija "M" Mäkinen\\',
            "purpose": None,
            "record": record,
            "prev_hash": "0" * 64,
            "hash": f"{n:064x}",
        }
        for n, record in enumerate(
            ['{"patients": [{"hetu": "150388-922J"}]}', '{"query": "Patient?name=\\u00e4"}'], 1
        )
    ]
    with database.write() as conn:
        RawExecutor.of(conn).insert_values(audit_entry, [[r[c] for c in columns] for r in rows])
    with database.read() as conn:
        stored = conn.execute(select(audit_entry).order_by(audit_entry.c.seq)).mappings().all()
    assert [json_column(row["record"]) for row in stored] == [
        {"patients": [{"hetu": "150388-922J"}]},
        {"query": "Patient?name=ä"},
    ]
    assert [(row["client_id"], row["user_id"]) for row in stored] == [
        (None, 'Maija "M" Mäkinen\\'),
        (None, 'Maija "M" Mäkinen\\'),
    ]


def test_a_value_too_long_for_its_column_fails_the_whole_batch(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite does not enforce column lengths")
    rows = [
        {"resource_pk": 1, "res_type": "Patient", "param": "p", "system": None, "code": code}
        for code in ("short", "x" * 257)
    ]
    with pytest.raises(Exception, match="too long"), database.write() as conn:
        RawExecutor.of(conn).insert_rows(sp_token, rows)
    with database.read() as conn:
        assert conn.execute(select(sp_token)).all() == []
