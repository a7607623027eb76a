"""Search-engine fixtures: the empty store of each backend (tests/conftest.py) and
helpers that write resources and their search-index rows the way the repository does,
with control over lastUpdated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, Engine, delete, insert, select, update

from gateway.search.extract import extract_index_rows
from gateway.search.params import SearchRequest, parse_search
from gateway.search.query import SearchPage, execute_search
from gateway.search.values import date_range
from gateway.store.database import Database
from gateway.store.schema import INDEX_TABLES, resource


@pytest.fixture
def engine(database: Database) -> Engine:
    """The engine of a migrated, empty store on each backend (see tests/conftest.py)."""
    return database.engine


@dataclass
class Store:
    """Writes resources like the repository does: the current row plus its index rows."""

    engine: Engine
    clock: int = date_range("2024-01-01T00:00:00Z")[0]

    def put(self, body: dict[str, Any], *, last_updated: str | None = None) -> int:
        """Creates or replaces ``body`` (which has resourceType and id); returns its pk."""
        self.clock += 1_000_000
        stamp = date_range(last_updated)[0] if last_updated else self.clock
        with self.engine.begin() as conn:
            existing = conn.execute(
                select(resource.c.pk, resource.c.version).where(
                    resource.c.res_type == body["resourceType"], resource.c.res_id == body["id"]
                )
            ).first()
            values = {"last_updated": stamp, "deleted": False, "body": orjson.dumps(body)}
            if existing is None:
                inserted = conn.execute(
                    insert(resource).values(
                        res_type=body["resourceType"], res_id=body["id"], version=1, **values
                    )
                ).inserted_primary_key
                assert inserted is not None
                pk = inserted[0]
            else:
                pk = existing.pk
                conn.execute(
                    update(resource)
                    .where(resource.c.pk == pk)
                    .values(version=existing.version + 1, **values)
                )
                _drop_index_rows(conn, pk)
            for kind, rows in extract_index_rows(body).items():
                if rows:
                    conn.execute(
                        insert(INDEX_TABLES[kind]),
                        [{"resource_pk": pk, "res_type": body["resourceType"], **r} for r in rows],
                    )
        return int(pk)

    def put_all(self, *bodies: dict[str, Any]) -> list[int]:
        return [self.put(b) for b in bodies]

    def delete(self, resource_type: str, resource_id: str) -> None:
        with self.engine.begin() as conn:
            pk = conn.execute(
                select(resource.c.pk).where(
                    resource.c.res_type == resource_type, resource.c.res_id == resource_id
                )
            ).scalar_one()
            conn.execute(
                update(resource)
                .where(resource.c.pk == pk)
                .values(deleted=True, body=None, version=resource.c.version + 1)
            )
            _drop_index_rows(conn, pk)

    def search(
        self,
        resource_type: str,
        query: str | list[tuple[str, str]],
        *,
        strict: bool = True,
        count: int = 100,
        max_count: int = 1000,
        **kwargs: Any,
    ) -> SearchPage:
        request = self.request(
            resource_type, query, strict=strict, count=count, max_count=max_count
        )
        with self.engine.connect() as conn:
            return execute_search(conn, request, **kwargs)

    def ids(
        self, resource_type: str, query: str | list[tuple[str, str]], **kwargs: Any
    ) -> list[str]:
        """The ids of every match, in result order (one page of up to 100)."""
        return [row.res_id for row in self.search(resource_type, query, **kwargs).matches]

    @staticmethod
    def request(
        resource_type: str,
        query: str | list[tuple[str, str]],
        *,
        strict: bool = True,
        count: int = 100,
        max_count: int = 1000,
    ) -> SearchRequest:
        pairs = parse_query(query) if isinstance(query, str) else query
        request, _ = parse_search(
            resource_type, pairs, strict=strict, default_count=count, max_count=max_count
        )
        return request


def parse_query(query: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` into pairs, keeping values literally (no percent-decoding)."""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return pairs


def _drop_index_rows(conn: Connection, pk: int) -> None:
    for table in INDEX_TABLES.values():
        conn.execute(delete(table).where(table.c.resource_pk == pk))


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)
