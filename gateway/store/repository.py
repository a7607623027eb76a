"""Versioned resource storage and its search index.

Every write keeps the previous versions (R4 http.html §3.1.0.7 history) and rewrites
the search-index rows of the resource in the same transaction. Updates are guarded by
the version they read (optimistic concurrency), so two writers can never both win.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Table,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)

from gateway.store import pg_write
from gateway.store.raw import RawExecutor, RawStatement, row_reader, table_columns
from gateway.store.schema import DERIVED_TABLES, resource, resource_version, sp_reference, sp_token


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One stored version of a resource; ``body`` is its JSON (None once deleted)."""

    pk: int
    res_type: str
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    body: bytes | None
    method: str = ""
    custodian: str | None = None
    client: str | None = None


# The access policy's condition on a row of ``resource`` (or an alias of it), given the
# one type all those rows have, if they have one.
Visibility = Callable[[FromClause, str | None], ColumnElement[bool]]


@dataclass(frozen=True, slots=True)
class KeyedVisibility:
    """A :data:`Visibility` whose conditions are the same for every request with the same
    ``key``, so that statements compiled with them serve all those requests."""

    key: Hashable
    condition: Visibility

    def __call__(self, res: FromClause, resource_type: str | None) -> ColumnElement[bool]:
        return self.condition(res, resource_type)


class StaleVersion(Exception):
    """Another transaction changed the resource after it was read."""


_CURRENT_COLUMNS = (
    resource.c.pk,
    resource.c.res_type,
    resource.c.res_id,
    resource.c.version,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.body,
    resource.c.custodian,
    resource.c.client,
)
_BY_ID = (resource.c.res_type == bindparam("res_type"), resource.c.res_id == bindparam("res_id"))
_v = resource_version.c
_VERSION_BODY = case((_v.version == resource.c.version, resource.c.body), else_=_v.body)
"""The body of a version: the current version's lives only in ``resource`` (its version
row holds none until a newer version supersedes it, see ``replace_current``)."""

SELECT_CURRENT = RawStatement(select(*_CURRENT_COLUMNS).where(*_BY_ID))
SELECT_CURRENT_FOR_UPDATE = RawStatement(select(*_CURRENT_COLUMNS).where(*_BY_ID).with_for_update())
SELECT_VERSION = RawStatement(
    select(
        _v.resource_pk,
        _v.res_type,
        _v.res_id,
        _v.version,
        _v.last_updated,
        _v.deleted,
        _VERSION_BODY,
        _v.method,
        resource.c.custodian,
        resource.c.client,
    )
    .join(resource, resource.c.pk == _v.resource_pk)
    .where(*_BY_ID, _v.version == bindparam("version"))
)
INSERT_RESOURCE = RawStatement(
    insert(resource)
    .values(
        {
            name: bindparam(name)
            for name in (
                "res_type",
                "res_id",
                "version",
                "last_updated",
                "deleted",
                "body",
                "custodian",
                "client",
            )
        }
    )
    .returning(resource.c.pk)
)
INSERT_VERSION = RawStatement(
    insert(resource_version).values({c.name: bindparam(c.name) for c in resource_version.columns})
)
UPDATE_CURRENT = RawStatement(
    update(resource)
    .where(resource.c.pk == bindparam("pk"), resource.c.version == bindparam("expected_version"))
    .values(
        version=bindparam("version"),
        last_updated=bindparam("last_updated"),
        deleted=bindparam("deleted"),
        body=bindparam("body"),
        client=bindparam("client"),
    )
)
_CURRENT_OF_PK = select(resource.c.version).where(resource.c.pk == bindparam("pk"))
KEEP_SUPERSEDED_BODY = RawStatement(
    update(resource_version)
    .where(
        _v.resource_pk == bindparam("pk"),
        _v.version == bindparam("expected_version"),
        # Only while that version is still current (else StaleVersion follows).
        _v.version == _CURRENT_OF_PK.scalar_subquery(),
    )
    .values(body=select(resource.c.body).where(resource.c.pk == bindparam("pk")).scalar_subquery())
)
DELETE_INDEX = {
    key: RawStatement(delete(table).where(table.c.resource_pk == bindparam("pk")))
    for key, table in DERIVED_TABLES.items()
}


# Fixed lookups of the gateway's own workflows (not user searches: those go through
# gateway.search with the access policy's condition): current resources of a type by one
# indexed token (system|code) or by one indexed reference.
def _current_by(table: Table, *columns: str) -> RawStatement:
    """Current resources joined to ``table`` rows of one type and parameter whose
    ``columns`` equal the bound values of the same names, oldest first."""
    return RawStatement(
        select(*_CURRENT_COLUMNS)
        .join(table, table.c.resource_pk == resource.c.pk)
        .where(
            *(table.c[name] == bindparam(name) for name in ("res_type", "param", *columns)),
            resource.c.deleted == false(),
        )
        .order_by(resource.c.pk)
        .limit(bindparam("limit"))
        # Bound, though always 0: SQLite renders LIMIT with an OFFSET, which would
        # otherwise be an anonymous parameter the fixed statement does not fill.
        .offset(bindparam("offset"))
    )


SELECT_BY_TOKEN = _current_by(sp_token, "code", "system")
SELECT_BY_REFERENCE = _current_by(sp_reference, "target_id", "target_type")


def _stored(row: Sequence[Any], *, method: str = "") -> StoredResource:
    """A row of ``_CURRENT_COLUMNS`` (or of SELECT_VERSION, whose method comes eighth)."""
    body = row[6]
    if len(row) > 9:
        method, custodian, client = row[7], row[8], row[9]
    else:
        custodian, client = row[7], row[8]
    return StoredResource(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        bool(row[5]),
        bytes(body) if body is not None else None,
        method,
        custodian,
        client,
    )


def get_current(
    db: RawExecutor, res_type: str, res_id: str, *, for_update: bool = False
) -> StoredResource | None:
    """The current version (possibly a deletion marker) in one indexed lookup.

    ``for_update`` locks the row until the transaction ends (PostgreSQL), so a
    read-check-write sequence cannot interleave with another writer.
    """
    statement = SELECT_CURRENT_FOR_UPDATE if for_update else SELECT_CURRENT
    row = db.fetchone(statement, {"res_type": res_type, "res_id": res_id})
    return None if row is None else _stored(row)


def lock_current(
    db: RawExecutor, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], StoredResource | None]:
    """The current version of each resource ``keys`` (type, id) as ``get_current`` with
    ``for_update`` reads it, None where there is none, in one round trip (PostgreSQL)."""
    found: dict[tuple[str, str], StoredResource | None] = dict.fromkeys(keys)
    for row in pg_write.lock_current(db, list(found)):
        stored = _stored(row)
        found[(stored.res_type, stored.res_id)] = stored
    return found


def get_version(db: RawExecutor, res_type: str, res_id: str, version: int) -> StoredResource | None:
    row = db.fetchone(SELECT_VERSION, {"res_type": res_type, "res_id": res_id, "version": version})
    return None if row is None else _stored(row)


def find_by_token(
    db: RawExecutor, res_type: str, param: str, system: str, code: str, *, limit: int
) -> list[StoredResource]:
    """Current resources of ``res_type`` whose token parameter ``param`` is
    ``system|code`` (search.html §3.1.1.4.4 token), oldest first."""
    values = {"res_type": res_type, "param": param, "system": system, "code": code}
    return [_stored(row) for row in db.fetchall(SELECT_BY_TOKEN, _page(values, limit))]


def find_by_reference(
    db: RawExecutor, res_type: str, param: str, target: str, *, limit: int
) -> list[StoredResource]:
    """Current resources of ``res_type`` whose reference parameter ``param`` points at
    ``target`` (``Type/id``; search.html §3.1.1.4.7 reference), oldest first."""
    target_type, _, target_id = target.partition("/")
    values = {
        "res_type": res_type,
        "param": param,
        "target_type": target_type,
        "target_id": target_id,
    }
    return [_stored(row) for row in db.fetchall(SELECT_BY_REFERENCE, _page(values, limit))]


def _page(values: Mapping[str, str], limit: int) -> dict[str, Any]:
    """The bound values of a ``_current_by`` statement: the first ``limit`` rows."""
    return {**values, "limit": limit, "offset": 0}


def insert_new(
    db: RawExecutor,
    *,
    res_type: str,
    res_id: str,
    body: bytes,
    now: int,
    index_rows: Mapping[str, Sequence[dict[str, Any]]],
    method: str = "POST",
    custodian: str | None = None,
    client: str | None = None,
) -> int:
    """Stores version 1 of a new resource; returns its primary key."""
    if db.dialect.name == "postgresql":
        keys, values = pg_write.index_arguments(index_rows)
        values.update(
            res_type=res_type,
            res_id=res_id,
            last_updated=now,
            body=body,
            custodian=custodian,
            client=client,
            method=method,
        )
        pk = pg_write.write(db, pg_write.insert_statement(keys), values)
        assert pk is not None
        return pk
    row = db.fetchone(
        INSERT_RESOURCE,
        {
            "res_type": res_type,
            "res_id": res_id,
            "version": 1,
            "last_updated": now,
            "deleted": False,
            "body": body,
            "custodian": custodian,
            "client": client,
        },
    )
    assert row is not None
    pk = int(row[0])
    _insert_version(db, pk, res_type, res_id, 1, now, method, deleted=False)
    write_index(db, pk, res_type, index_rows)
    return pk


def replace_current(
    db: RawExecutor,
    *,
    current: StoredResource,
    version: int,
    body: bytes | None,
    now: int,
    method: str,
    index_rows: Mapping[str, Sequence[dict[str, Any]]],
    client: str | None = None,
) -> None:
    """Writes a new version over ``current``; raises StaleVersion if it changed meanwhile.

    ``body`` None records a deletion (R4 http.html §3.1.0.7.1: history keeps it). The
    custodian never changes; the client is that of the new version.
    """
    if db.dialect.name == "postgresql":
        keys, values = pg_write.index_arguments(index_rows)
        values.update(
            pk=current.pk,
            expected_version=current.version,
            version=version,
            last_updated=now,
            deleted=body is None,
            body=body,
            client=client,
            method=method,
        )
        if pg_write.write(db, pg_write.replace_statement(keys), values) is None:
            raise StaleVersion(f"{current.res_type}/{current.res_id}")
        return
    # The body of the version being superseded moves into its version row first.
    db.execute(KEEP_SUPERSEDED_BODY, {"pk": current.pk, "expected_version": current.version})
    changed = db.execute(
        UPDATE_CURRENT,
        {
            "pk": current.pk,
            "expected_version": current.version,
            "version": version,
            "last_updated": now,
            "deleted": body is None,
            "body": body,
            "client": client,
        },
    )
    if changed != 1:
        raise StaleVersion(f"{current.res_type}/{current.res_id}")
    _insert_version(
        db, current.pk, current.res_type, current.res_id, version, now, method, deleted=body is None
    )
    clear_index(db, current.pk)
    write_index(db, current.pk, current.res_type, index_rows)


def _insert_version(
    db: RawExecutor,
    pk: int,
    res_type: str,
    res_id: str,
    version: int,
    now: int,
    method: str,
    *,
    deleted: bool,
) -> None:
    """The version row of a new current version: its body stays in ``resource`` alone
    until a newer version supersedes it."""
    db.execute(
        INSERT_VERSION,
        {
            "resource_pk": pk,
            "version": version,
            "res_type": res_type,
            "res_id": res_id,
            "last_updated": now,
            "method": method,
            "deleted": deleted,
            "body": None,
        },
    )


def write_index(
    db: RawExecutor, pk: int, res_type: str, index_rows: Mapping[str, Sequence[dict[str, Any]]]
) -> None:
    for table_key, rows in index_rows.items():
        if rows:
            values = _INDEX_VALUES[table_key]
            db.insert_values(
                DERIVED_TABLES[table_key], [(pk, res_type, *values(row)) for row in rows]
            )


def _index_values(table: Table) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """Reads an index row's own columns (all but ``resource_pk`` and ``res_type``, which
    lead every index table) in the table's column order."""
    columns = table_columns(table)
    if columns[:2] != ("resource_pk", "res_type"):
        raise RuntimeError(f"index table {table.name} does not have the expected columns")
    return row_reader(columns[2:])


_INDEX_VALUES = {key: _index_values(table) for key, table in DERIVED_TABLES.items()}


def clear_index(db: RawExecutor, pk: int) -> None:
    for statement in DELETE_INDEX.values():
        db.execute(statement, {"pk": pk})


def history(
    conn: Connection,
    *,
    res_type: str | None = None,
    res_id: str | None = None,
    since: int | None = None,
    at: tuple[int, int] | None = None,
    before: tuple[int, int, int] | None = None,
    limit: int,
    visibility: Visibility | None = None,
) -> list[StoredResource]:
    """Versions newest first (R4 http.html §3.1.0.7), optionally after a keyset position.

    ``before`` is (last_updated, resource_pk, version) of the last row already returned;
    ``at`` keeps the versions that were current at some point in ``[low, high)``;
    ``visibility`` (the access policy's condition on ``resource``) hides whole resources.
    """
    v = resource_version.c
    query = select(
        v.resource_pk,
        v.res_type,
        v.res_id,
        v.version,
        v.last_updated,
        v.deleted,
        _VERSION_BODY,
        v.method,
        resource.c.custodian,
        resource.c.client,
    ).join(resource, resource.c.pk == v.resource_pk)
    if visibility is not None:
        query = query.where(visibility(resource, res_type))
    if res_id is not None:
        query = query.where(resource.c.res_type == res_type, resource.c.res_id == res_id)
    elif res_type is not None:
        query = query.where(v.res_type == res_type)
    if since is not None:
        query = query.where(v.last_updated >= since)
    if at is not None:
        low, high = at
        newer = resource_version.alias("newer")
        superseded_at = (
            select(func.min(newer.c.last_updated))
            .where(newer.c.resource_pk == v.resource_pk, newer.c.version > v.version)
            .scalar_subquery()
        )
        query = query.where(
            v.last_updated < high, or_(superseded_at.is_(None), superseded_at > low)
        )
    if before is not None:
        updated, pk, version = before
        query = query.where(
            (v.last_updated < updated)
            | ((v.last_updated == updated) & (v.resource_pk < pk))
            | ((v.last_updated == updated) & (v.resource_pk == pk) & (v.version < version))
        )
    query = query.order_by(v.last_updated.desc(), v.resource_pk.desc(), v.version.desc()).limit(
        limit
    )
    return [_stored(row) for row in conn.execute(query)]
