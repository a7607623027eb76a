"""Fixed statements run on the DBAPI connection, compiled once per dialect.

The hot paths of the store (read by id, insert a version, write index rows) are a
handful of statements whose shape never changes. SQLAlchemy builds and compiles
them once per dialect; they then run directly on the driver's cursor, which saves
the per-execution statement construction, cache-key and event overhead of the
Core execution path (about 10x on a read). Searches are built with SQLAlchemy Core
and compiled here once per search shape (``gateway.search.shapes``); the rest of the
dynamic SQL (history, the searches that are built per request) runs through Core.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from gateway.store import pg_json

SQLITE_CHUNK = 64
"""Rows per multi-row INSERT of a large SQLite batch (e.g. the access log's)."""


Arguments = Callable[[Mapping[str, Any]], Any]
"""Turns named values into what the driver takes: a tuple in the statement's parameter
order for positional parameter styles, the mapping itself for named ones."""


class RawStatement:
    """A SQLAlchemy statement with its compiled SQL cached per dialect."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, Arguments]] = {}

    def compiled(self, dialect: Dialect) -> tuple[str, Arguments]:
        """The SQL text, and how to pass it the values by name."""
        key = dialect.name
        found = self._compiled.get(key)
        if found is None:
            sql, arguments, _ = compile_statement(self.statement, dialect)
            found = self._compiled[key] = (sql, arguments)
        return found


def compile_statement(
    statement: ClauseElement, dialect: Dialect
) -> tuple[str, Arguments, SQLCompiler]:
    """A statement's SQL text for ``dialect`` (every ``IN`` list expanded), how to pass
    it values by name, and the compiled form (whose ``construct_params()`` names the
    values bound in the statement itself)."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    assert isinstance(compiled, SQLCompiler)
    positions = compiled.positiontup if compiled.positional else None
    arguments = row_reader(tuple(positions)) if positions else _named
    return compiled.string, arguments, compiled


def _named(values: Mapping[str, Any]) -> Any:
    return values


def row_reader(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """Reads the values of ``names`` from a mapping, as a tuple in that order."""
    if len(names) == 1:
        (name,) = names
        return lambda values: (values[name],)
    getter: Callable[[Mapping[str, Any]], tuple[Any, ...]] = itemgetter(*names)
    return getter


class RawExecutor:
    """Runs RawStatements on one DBAPI connection inside the caller's transaction."""

    __slots__ = ("dbapi", "dialect")

    def __init__(self, dbapi: Any, dialect: Dialect) -> None:
        self.dbapi = dbapi
        self.dialect = dialect

    @classmethod
    def of(cls, conn: Connection | RawExecutor) -> RawExecutor:
        """The executor sharing an open SQLAlchemy connection (and its transaction);
        an executor is its own."""
        if isinstance(conn, RawExecutor):
            return conn
        return cls(conn.connection.driver_connection, conn.dialect)

    def fetchone(self, statement: RawStatement, values: Mapping[str, Any]) -> Sequence[Any] | None:
        sql, arguments = statement.compiled(self.dialect)
        return self.fetchone_sql(sql, arguments(values))

    def fetchone_sql(self, sql: str, arguments: Any) -> Sequence[Any] | None:
        """The first row of SQL text written for this dialect's driver (its parameter
        style; only schema identifiers in the text, every value in ``arguments``)."""
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, arguments)
            row: Sequence[Any] | None = cursor.fetchone()
            return row
        finally:
            cursor.close()

    def fetchall(self, statement: RawStatement, values: Mapping[str, Any]) -> list[Sequence[Any]]:
        sql, arguments = statement.compiled(self.dialect)
        return self.fetchall_sql(sql, arguments(values))

    def fetchall_sql(self, sql: str, arguments: Any) -> list[Sequence[Any]]:
        """Every row of SQL text written for this dialect's driver (as ``fetchone_sql``)."""
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, arguments)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def execute(self, statement: RawStatement, values: Mapping[str, Any]) -> int:
        """Runs one statement; returns the number of rows it changed."""
        sql, arguments = statement.compiled(self.dialect)
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, arguments(values))
            count: int = cursor.rowcount
            return count
        finally:
            cursor.close()

    def executemany(self, statement: RawStatement, rows: Iterable[Mapping[str, Any]]) -> None:
        sql, arguments = statement.compiled(self.dialect)
        cursor = self.dbapi.cursor()
        try:
            cursor.executemany(sql, [arguments(row) for row in rows])
        finally:
            cursor.close()

    def lock_transaction_key(self, key: str | int) -> None:
        """Waits for, and holds until the transaction ends, PostgreSQL's advisory lock
        on ``key`` (manual §9.27.10; a string is hashed to the lock's 64 bits). SQLite's
        write transactions are serial already: nothing to do there."""
        if self.dialect.name != "postgresql":
            return
        if isinstance(key, str):
            key = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        self.fetchone_sql("SELECT pg_advisory_xact_lock(%s)", (key,))

    def insert_rows(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Inserts rows given as column → value mappings (see ``insert_values``)."""
        if not rows:
            return
        if self.dialect.name == "postgresql":
            self._insert_json(table, rows)
        else:
            self.insert_values(table, list(map(row_reader(table_columns(table)), rows)))

    def insert_values(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        """Inserts rows into one of the store's own tables in one round trip; each row
        holds a value for every column of ``table``, in the table's column order.

        SQLite takes them through ``executemany`` (a loop in C); PostgreSQL gets one
        ``INSERT … SELECT`` over the rows bound as one JSON text (``gateway.store.pg_json``:
        one parameter, one statement text whatever the number of rows). Only identifiers
        of the schema are put into the SQL text; values are always bound.
        """
        if not rows:
            return
        if self.dialect.name == "postgresql":
            columns = table_columns(table)
            self._insert_json(table, [dict(zip(columns, row, strict=True)) for row in rows])
            return
        cursor = self.dbapi.cursor()
        try:
            # Large batches go in statements of SQLITE_CHUNK rows (one step each, so the
            # driver releases the GIL once per chunk, not once per row); the rest through
            # executemany. Two statement texts per table stay cached.
            full = len(rows) - len(rows) % SQLITE_CHUNK
            if full:
                sql = _sqlite_insert(table, SQLITE_CHUNK)
                for start in range(0, full, SQLITE_CHUNK):
                    chunk = rows[start : start + SQLITE_CHUNK]
                    cursor.execute(sql, [v for row in chunk for v in row])
            if full < len(rows):
                cursor.executemany(_sqlite_insert(table, 1), rows[full:])
        finally:
            cursor.close()

    def _insert_json(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        sql: str | None = table.info.get("json_insert")
        if sql is None:
            columns = table_columns(table)
            selected, source = pg_json.expand(table, columns, "%s")
            sql = table.info["json_insert"] = (
                f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {selected} FROM {source}"
            )
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, (pg_json.rows_json(table, rows),))
        finally:
            cursor.close()


@lru_cache(maxsize=512)
def _sqlite_insert(table: Table, rows: int) -> str:
    """``INSERT INTO table (every column) VALUES (?, …), …`` for ``rows`` rows."""
    columns = table_columns(table)
    one = "(" + ", ".join("?" for _ in columns) + ")"
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES " + ", ".join(
        one for _ in range(rows)
    )


def table_columns(table: Table) -> tuple[str, ...]:
    """The column names of one of the store's tables, in order (cached on the table)."""
    columns: tuple[str, ...] | None = table.info.get("column_names")
    if columns is None:
        # Plain strings: a Column's name is a str subclass, which orjson takes as no key.
        columns = table.info["column_names"] = tuple(str(c.name) for c in table.columns)
    return columns


def json_column(value: Any) -> Any:
    """A JSON column as a driver returns it: text on SQLite, decoded on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
