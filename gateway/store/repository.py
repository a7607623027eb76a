"""Versioned resource storage and its search index (SQLAlchemy Core, no ORM).

Every write keeps the previous versions (R4 http.html §3.1.0.7 history) and rewrites
the search-index rows of the resource in the same transaction. Updates are guarded by
the version they read (optimistic concurrency), so two writers can never both win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from gateway.store.schema import INDEX_TABLES, resource, resource_version


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
)


def get_current(
    conn: Connection, res_type: str, res_id: str, *, for_update: bool = False
) -> StoredResource | None:
    """The current version (possibly a deletion marker) in one indexed lookup.

    ``for_update`` locks the row until the transaction ends (PostgreSQL), so a
    read-check-write sequence cannot interleave with another writer.
    """
    query = select(*_CURRENT_COLUMNS).where(
        resource.c.res_type == res_type, resource.c.res_id == res_id
    )
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else StoredResource(*row)


def get_version(
    conn: Connection, res_type: str, res_id: str, version: int
) -> StoredResource | None:
    v = resource_version.c
    row = conn.execute(
        select(
            v.resource_pk,
            v.res_type,
            v.res_id,
            v.version,
            v.last_updated,
            v.deleted,
            v.body,
            v.method,
        )
        .join(resource, resource.c.pk == v.resource_pk)
        .where(resource.c.res_type == res_type, resource.c.res_id == res_id, v.version == version)
    ).first()
    return None if row is None else StoredResource(*row)


def insert_new(
    conn: Connection,
    *,
    res_type: str,
    res_id: str,
    body: bytes,
    now: int,
    index_rows: Mapping[str, Sequence[dict[str, Any]]],
    method: str = "POST",
) -> int:
    """Stores version 1 of a new resource; returns its primary key."""
    pk: int = conn.execute(
        insert(resource).values(
            res_type=res_type, res_id=res_id, version=1, last_updated=now, deleted=False, body=body
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    _insert_version(conn, pk, res_type, res_id, 1, now, method, body)
    write_index(conn, pk, res_type, index_rows)
    return pk


def replace_current(
    conn: Connection,
    *,
    current: StoredResource,
    version: int,
    body: bytes | None,
    now: int,
    method: str,
    index_rows: Mapping[str, Sequence[dict[str, Any]]],
) -> None:
    """Writes a new version over ``current``; raises StaleVersion if it changed meanwhile.

    ``body`` None records a deletion (R4 http.html §3.1.0.7.1: history keeps it).
    """
    result = conn.execute(
        update(resource)
        .where(resource.c.pk == current.pk, resource.c.version == current.version)
        .values(version=version, last_updated=now, deleted=body is None, body=body)
    )
    if result.rowcount != 1:
        raise StaleVersion(f"{current.res_type}/{current.res_id}")
    _insert_version(conn, current.pk, current.res_type, current.res_id, version, now, method, body)
    clear_index(conn, current.pk)
    write_index(conn, current.pk, current.res_type, index_rows)


def _insert_version(
    conn: Connection,
    pk: int,
    res_type: str,
    res_id: str,
    version: int,
    now: int,
    method: str,
    body: bytes | None,
) -> None:
    conn.execute(
        insert(resource_version).values(
            resource_pk=pk,
            version=version,
            res_type=res_type,
            res_id=res_id,
            last_updated=now,
            method=method,
            deleted=body is None,
            body=body,
        )
    )


def write_index(
    conn: Connection, pk: int, res_type: str, index_rows: Mapping[str, Sequence[dict[str, Any]]]
) -> None:
    for table_key, rows in index_rows.items():
        if rows:
            conn.execute(
                insert(INDEX_TABLES[table_key]),
                [{"resource_pk": pk, "res_type": res_type, **row} for row in rows],
            )


def clear_index(conn: Connection, pk: int) -> None:
    for table in INDEX_TABLES.values():
        conn.execute(delete(table).where(table.c.resource_pk == pk))


def history(
    conn: Connection,
    *,
    res_type: str | None = None,
    res_id: str | None = None,
    since: int | None = None,
    at: tuple[int, int] | None = None,
    before: tuple[int, int, int] | None = None,
    limit: int,
) -> list[StoredResource]:
    """Versions newest first (R4 http.html §3.1.0.7), optionally after a keyset position.

    ``before`` is (last_updated, resource_pk, version) of the last row already returned;
    ``at`` keeps the versions that were current at some point in ``[low, high)``.
    """
    v = resource_version.c
    query = select(
        v.resource_pk, v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.body, v.method
    )
    if res_id is not None:
        query = query.join(resource, resource.c.pk == v.resource_pk).where(
            resource.c.res_type == res_type, resource.c.res_id == res_id
        )
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
    return [StoredResource(*row) for row in conn.execute(query)]
