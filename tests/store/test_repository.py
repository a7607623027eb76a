"""The store's fixed lookups by one token or one reference."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from gateway.config import Settings
from gateway.services import resources
from gateway.services.context import RequestContext
from gateway.store import pg_write, repository
from gateway.store.database import Database
from gateway.store.migrate import downgrade, upgrade
from gateway.store.raw import RawExecutor
from gateway.store.schema import DERIVED_TABLES, resource_version
from tests.fixtures import load_fixture

HETU_SYSTEM = "urn:oid:1.2.246.21"


def _context(database: Database) -> RequestContext:
    return RequestContext(
        db=database, settings=Settings(database_url=database.url), base_url="http://x/fhir"
    )


def test_find_by_token_and_by_reference_skip_deleted_and_keep_order(database: Database) -> None:
    ctx = _context(database)
    patient = load_fixture("patient-aijala")
    resources.update_resource(
        ctx, resource_type="Patient", resource_id="patient-aijala", resource=patient
    )
    task_ids = []
    for _ in range(3):
        created = resources.create_resource(
            ctx, resource_type="Task", resource=load_fixture("task-huoli-aijala")
        )
        task_ids.append(created.stored.res_id)
    resources.delete_resource(ctx, resource_type="Task", resource_id=task_ids[1])

    with database.read_raw() as db:
        found = repository.find_by_token(
            db, "Patient", "identifier", HETU_SYSTEM, "150388-921H", limit=5
        )
        other = repository.find_by_token(
            db, "Patient", "identifier", HETU_SYSTEM, "010101-123N", limit=5
        )
        tasks = repository.find_by_reference(
            db, "Task", "patient", "Patient/patient-aijala", limit=5
        )
        first = repository.find_by_reference(
            db, "Task", "patient", "Patient/patient-aijala", limit=1
        )
    assert [p.res_id for p in found] == ["patient-aijala"]
    assert other == []
    assert [t.res_id for t in tasks] == [task_ids[0], task_ids[2]]
    assert [t.res_id for t in first] == [task_ids[0]]
    assert all(t.body is not None and not t.deleted for t in tasks)


# -- writes: the resource row, its versions and its index rows ----------------------

_ROWS: dict[str, list[dict[str, object]]] = {
    "token": [
        {
            "param": "identifier",
            "system": "urn:oid:1.2.246.21",
            "code": "010280-952L",
            "text": None,
        },
        {"param": "active", "system": None, "code": "true", "text": None},
    ],
    "string": [{"param": "family", "value_norm": "aijala", "value_exact": "Äijälä"}],
    "reference": [
        {
            "param": "organization",
            "target_type": "Organization",
            "target_id": "pirha",
            "target_url": None,
        },
    ],
    "date": [{"param": "birthdate", "low": -946_771_200_000_000, "high": -946_684_800_000_000}],
    "number": [
        {"param": "value", "value": 2, "low": 1.5, "high": 2.5, "system": None, "code": None},
    ],
    "uri": [{"param": "url", "value": "https://example.org/x?a='); DROP TABLE resource; --"}],
    "consent_grant": [
        {
            "param": "grant",
            "patient_id": "p1",
            "actor": "pirha",
            "purpose": "*",
            "data_class": "*",
            "effect": "permit",
            "period_low": None,
            "period_high": 10,
        },
    ],
}


def _index_of(database: Database, pk: int) -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}
    with database.read() as conn:
        for key, table in DERIVED_TABLES.items():
            rows = conn.execute(select(table).where(table.c.resource_pk == pk)).mappings()
            found[key] = sorted(
                (
                    {k: v for k, v in row.items() if k not in ("resource_pk", "res_type")}
                    for row in rows
                ),
                key=repr,
            )
    return found


def _expected(rows: dict[str, list[dict[str, object]]]) -> dict[str, list[dict[str, object]]]:
    # A number column holds floats on both backends.
    def normal(key: str, row: dict[str, object]) -> dict[str, object]:
        if key == "number":
            return {k: float(v) if isinstance(v, int) else v for k, v in row.items()}
        return row

    return {
        key: sorted((normal(key, row) for row in rows.get(key, [])), key=repr)
        for key in DERIVED_TABLES
    }


def _versions(database: Database, pk: int) -> list[tuple[int, str, bool, bytes | None]]:
    v = resource_version.c
    with database.read() as conn:
        rows = conn.execute(
            select(v.version, v.method, v.deleted, v.body)
            .where(v.resource_pk == pk)
            .order_by(v.version)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


def _store(database: Database, *, body: bytes = b"{}", **extra: Any) -> int:
    """Stores Patient/p1 with every kind of index row; returns its pk."""
    with database.write() as conn:
        return repository.insert_new(
            RawExecutor.of(conn),
            res_type="Patient",
            res_id="p1",
            body=body,
            now=5,
            index_rows=extra.pop("index_rows", _ROWS),
            **extra,
        )


def _replace(
    database: Database,
    *,
    version: int,
    body: bytes | None,
    index_rows: dict[str, list[dict[str, object]]],
    method: str = "PUT",
    current: repository.StoredResource | None = None,
    client: str | None = None,
) -> None:
    """Writes version ``version`` of Patient/p1 over ``current`` (the stored one if None)."""
    with database.write() as conn:
        db = RawExecutor.of(conn)
        over = current or repository.get_current(db, "Patient", "p1")
        assert over is not None
        repository.replace_current(
            db,
            current=over,
            version=version,
            body=body,
            now=5 + version,
            method=method,
            index_rows=index_rows,
            client=client,
        )


def test_a_new_resource_is_stored_with_its_version_and_every_kind_of_index_row(
    database: Database,
) -> None:
    pk = _store(database, body=b'{"a":1}', method="PUT", custodian="pirha", client="c1")
    with database.read() as conn:
        current = repository.get_current(RawExecutor.of(conn), "Patient", "p1")
    assert current is not None
    assert (current.pk, current.version, current.last_updated) == (pk, 1, 5)
    assert current.body == b'{"a":1}'
    assert (current.custodian, current.client, current.deleted) == ("pirha", "c1", False)
    # The current version's body is stored once, in the resource row.
    assert _versions(database, pk) == [(1, "PUT", False, None)]
    assert _index_of(database, pk) == _expected(_ROWS)


def test_a_new_version_replaces_every_index_row_and_keeps_the_old_version(
    database: Database,
) -> None:
    pk = _store(database)
    new_rows: dict[str, list[dict[str, object]]] = {
        "token": [{"param": "active", "system": None, "code": "false", "text": None}]
    }
    _replace(database, version=2, body=b'{"b":2}', index_rows=new_rows, client="c2")
    assert _index_of(database, pk) == _expected(new_rows)
    # The superseded version's row now holds its body; the current one's does not.
    assert _versions(database, pk) == [(1, "POST", False, b"{}"), (2, "PUT", False, None)]
    _replace(database, version=3, body=None, index_rows={}, method="DELETE")
    assert _index_of(database, pk) == _expected({})
    assert _versions(database, pk)[1:] == [(2, "PUT", False, b'{"b":2}'), (3, "DELETE", True, None)]


def test_every_version_is_read_with_its_own_body(database: Database) -> None:
    """vread and history read the current version's body from the resource row and a
    superseded version's from its own row."""
    _store(database, body=b'{"v":1}')
    _replace(database, version=2, body=b'{"v":2}', index_rows={})
    _replace(database, version=3, body=b'{"v":3}', index_rows={})
    with database.read() as conn:
        db = RawExecutor.of(conn)
        bodies = {
            n: getattr(repository.get_version(db, "Patient", "p1", n), "body", None)
            for n in (1, 2, 3)
        }
        listed = repository.history(conn, res_type="Patient", res_id="p1", limit=10)
    assert bodies == {1: b'{"v":1}', 2: b'{"v":2}', 3: b'{"v":3}'}
    assert [(v.version, v.body) for v in listed] == [
        (3, b'{"v":3}'),
        (2, b'{"v":2}'),
        (1, b'{"v":1}'),
    ]


def test_a_write_over_a_version_that_changed_meanwhile_changes_nothing(
    database: Database,
) -> None:
    pk = _store(database)
    with database.read() as conn:
        stale = repository.get_current(RawExecutor.of(conn), "Patient", "p1")
    _replace(database, version=2, body=b'{"v":2}', index_rows={})
    assert stale is not None
    with database.write() as conn, pytest.raises(repository.StaleVersion):
        # Caught inside the transaction, which then commits what the attempt left.
        repository.replace_current(
            RawExecutor.of(conn),
            current=stale,
            version=2,
            body=b'{"lost":1}',
            now=9,
            method="PUT",
            index_rows={"token": _ROWS["token"]},
        )
    # Version 1 keeps its own body: the stale write copied nothing over it.
    assert _versions(database, pk) == [(1, "POST", False, b"{}"), (2, "PUT", False, None)]
    assert _index_of(database, pk) == _expected({})


def test_index_values_json_must_escape_or_cannot_spell_are_stored_as_given(
    database: Database,
) -> None:
    """Infinite number bounds, quotes, backslashes, control and non-BMP characters."""
    awkward: dict[str, list[dict[str, object]]] = {
        "string": [
            {"param": "family", "value_norm": 'a"b\\c', "value_exact": "x\n\t\x01\U0001f600"}
        ],
        "number": [
            {
                "param": "value",
                "value": 1e308,
                "low": float("-inf"),
                "high": float("inf"),
                "system": None,
                "code": None,
            },
        ],
    }
    pk = _store(database, index_rows=awkward)
    assert _index_of(database, pk) == _expected(awkward)


def test_an_index_value_too_long_for_its_column_is_refused_not_cut(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite does not enforce column lengths")
    too_long = {"reference": [{**_ROWS["reference"][0], "target_id": "x" * 65}]}
    with pytest.raises(Exception, match="too long"):
        _store(database, index_rows=too_long)
    with database.read() as conn:
        assert repository.get_current(RawExecutor.of(conn), "Patient", "p1") is None


@pytest.mark.parametrize("listed_max", [pg_write.LISTED_KEYS_MAX, 1], ids=["listed", "arrays"])
def test_lock_current_reads_and_locks_every_existing_resource_in_one_statement(
    database: Database, monkeypatch: pytest.MonkeyPatch, listed_max: int
) -> None:
    """Keys go in a VALUES list, or as two arrays beyond ``LISTED_KEYS_MAX``."""
    if database.is_sqlite:
        pytest.skip("row locks are PostgreSQL's; SQLite writers share one transaction")
    monkeypatch.setattr(pg_write, "LISTED_KEYS_MAX", listed_max)
    pk = _store(database)
    keys = [("Patient", "p1"), ("Patient", "missing"), ("Task", "p1")]
    with database.write() as conn:
        found = repository.lock_current(RawExecutor.of(conn), keys)
        assert list(found) == keys
        assert found[("Patient", "missing")] is None and found[("Task", "p1")] is None
        assert found[("Patient", "p1")] == repository.get_current(
            RawExecutor.of(conn), "Patient", "p1"
        )
        stored = found[("Patient", "p1")]
        assert stored is not None and stored.pk == pk
        # Another transaction cannot lock the row while this one holds it.
        with database.engine.connect() as other:
            other.execute(text("SET lock_timeout = '100ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                other.execute(text("SELECT pk FROM resource WHERE pk = :pk FOR UPDATE"), {"pk": pk})


def test_lock_current_of_a_few_keys_reuses_a_cached_plan(database: Database) -> None:
    """Listed keys make a statement whose generic plan PostgreSQL keeps: after psycopg
    prepares it and the server's first custom plans, no execution is planned again."""
    if database.is_sqlite:
        pytest.skip("row locks are PostgreSQL's; SQLite writers share one transaction")
    _store(database)
    keys = [("Patient", "p1"), ("Task", "t1"), ("Consent", "c1")]
    with database.write() as conn:
        raw = RawExecutor.of(conn)
        for _ in range(15):
            repository.lock_current(raw, keys)
        plans = raw.fetchone_sql(
            "SELECT generic_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            ("%FROM (VALUES%FOR UPDATE OF r",),
        )
    assert plans is not None and plans[0] >= 1


def test_migration_0008_keeps_each_body_once_and_its_downgrade_restores_the_copy(
    database: Database,
) -> None:
    pk = _store(database, body=b'{"v":1}')
    _replace(database, version=2, body=b'{"v":2}', index_rows={})
    downgrade(database.engine, "0007")
    try:
        # Before 0008 every version row held its body, the current one's included.
        assert [v[3] for v in _versions(database, pk)] == [b'{"v":1}', b'{"v":2}']
    finally:
        upgrade(database.engine)
    assert [v[3] for v in _versions(database, pk)] == [b'{"v":1}', None]
