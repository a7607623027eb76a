"""PostgreSQL: a resource write in one statement.

Every statement is a round trip that the event loop waits for. Written statement by
statement, a new resource with its version and index rows took four to seven of them
and an update ten or more (one ``DELETE`` per index table). Here each is one statement
of data-modifying ``WITH`` queries (PostgreSQL 15 manual §7.8.4): its parts run on one
snapshot, so the ``DELETE`` of a resource's old index rows cannot see the new rows
inserted beside it, and nothing of it is done if the row it starts from is not there.

The index rows of each table are bound as one JSON text (``gateway.store.pg_json``),
so the statement text depends only on which index tables receive rows, and is built
once for each such set. Only identifiers of the schema go into the text; every value
is bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table

from gateway.store import pg_json
from gateway.store.raw import RawExecutor
from gateway.store.schema import DERIVED_TABLES

_RESOURCE_COLUMNS = "pk, res_type, res_id, version, last_updated, deleted, body"
_VERSION_COLUMNS = "resource_pk, version, res_type, res_id, last_updated, method, deleted, body"
_INSERT_RESOURCE = (
    "INSERT INTO resource (res_type, res_id, version, last_updated, deleted, body, custodian, "
    "client) VALUES (%(res_type)s, %(res_id)s, 1, %(last_updated)s, false, %(body)s, "
    f"%(custodian)s, %(client)s) RETURNING {_RESOURCE_COLUMNS}"
)
# The new version's row holds no body while it is current (``resource`` has it); the
# version it supersedes gets its body from the statement's snapshot of ``resource``.
_INSERT_VERSION = (
    f"v AS (INSERT INTO resource_version ({_VERSION_COLUMNS}) SELECT pk, version, res_type, "
    "res_id, last_updated, %(method)s, deleted, NULL FROM r)"
)
_KEEP_SUPERSEDED_BODY = (
    "superseded AS (UPDATE resource_version sv SET body = old.body FROM resource old "
    "WHERE old.pk = %(pk)s AND old.version = %(expected_version)s "
    "AND sv.resource_pk = old.pk AND sv.version = old.version)"
)
_UPDATE_RESOURCE = (
    "UPDATE resource SET version = %(version)s, last_updated = %(last_updated)s, "
    "deleted = %(deleted)s, body = %(body)s, client = %(client)s "
    f"WHERE pk = %(pk)s AND version = %(expected_version)s RETURNING {_RESOURCE_COLUMNS}"
)


_LOCKED_ROW = (
    "SELECT r.pk, r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.body, "
    "r.custodian, r.client FROM {keys} AS k (res_type, res_id) JOIN resource r "
    "ON r.res_type = k.res_type AND r.res_id = k.res_id "
    "ORDER BY r.res_type, r.res_id FOR UPDATE OF r"
)
_LOCK_MANY = _LOCKED_ROW.format(keys="unnest(%s::TEXT[], %s::TEXT[])")
LISTED_KEYS_MAX = 64
"""Up to this many keys are bound one by one in a ``VALUES`` list, whose statement (one
per count) PostgreSQL plans once and keeps (sql-prepare.html: the generic plan costs what
a custom one does, as it knows how many rows it joins); a plan over ``unnest`` of two
arrays assumes a hundred rows, so the server planned it anew on every execution."""


@cache
def _lock_listed(count: int) -> str:
    return _LOCKED_ROW.format(keys=f"(VALUES {', '.join('(%s, %s)' for _ in range(count))})")


def lock_current(db: RawExecutor, keys: Sequence[tuple[str, str]]) -> list[Sequence[Any]]:
    """The current rows of the resources ``keys`` (type, id) that exist, each locked
    until the transaction ends (§13.3.2 ``FOR UPDATE``), in one round trip. Rows are
    locked in (type, id) order, so two writers locking overlapping sets wait for each
    other instead of deadlocking."""
    if len(keys) <= LISTED_KEYS_MAX:
        return db.fetchall_sql(_lock_listed(len(keys)), [v for key in keys for v in key])
    types = [res_type for res_type, _ in keys]
    ids = [res_id for _, res_id in keys]
    return db.fetchall_sql(_LOCK_MANY, (types, ids))


def _value_columns(table: Table) -> list[str]:
    """The columns of an index row besides ``resource_pk`` and ``res_type``."""
    return [c.name for c in table.columns if c.name not in ("resource_pk", "res_type")]


def _insert_index(key: str) -> str:
    table = DERIVED_TABLES[key]
    columns = _value_columns(table)
    selected, rows = pg_json.expand(table, columns, f"%({key})s")
    return (
        f"ix_{key} AS (INSERT INTO {table.name} (resource_pk, res_type, {', '.join(columns)}) "
        f"SELECT r.pk, r.res_type, {selected} FROM r, {rows})"
    )


@cache
def insert_statement(keys: tuple[str, ...]) -> str:
    """The statement that stores version 1 of a resource with index rows in ``keys``."""
    parts = [
        f"r AS ({_INSERT_RESOURCE})",
        _INSERT_VERSION,
        *(_insert_index(key) for key in keys),
    ]
    return "WITH " + ", ".join(parts) + " SELECT pk FROM r"


@cache
def replace_statement(keys: tuple[str, ...]) -> str:
    """The statement that writes a new version over the current one (if it still has
    the expected version), replacing all its index rows by those in ``keys``."""
    parts = [
        f"r AS ({_UPDATE_RESOURCE})",
        _KEEP_SUPERSEDED_BODY,
        _INSERT_VERSION,
        *(
            f"del_{key} AS (DELETE FROM {table.name} WHERE resource_pk IN (SELECT pk FROM r))"
            for key, table in DERIVED_TABLES.items()
        ),
        *(_insert_index(key) for key in keys),
    ]
    return "WITH " + ", ".join(parts) + " SELECT pk FROM r"


def index_arguments(
    index_rows: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The tables that get rows, and the rows of each as one JSON text (an index row's
    keys are its columns' names)."""
    keys = tuple(key for key in DERIVED_TABLES if index_rows.get(key))
    return keys, {key: pg_json.rows_json(DERIVED_TABLES[key], index_rows[key]) for key in keys}


def write(db: RawExecutor, statement: str, values: dict[str, Any]) -> int | None:
    """Runs one of this module's statements; the pk of the written resource, or None
    when the resource row it starts from did not match."""
    row = db.fetchone_sql(statement, values)
    return None if row is None else int(row[0])
