"""Fixed statements run on the DBAPI connection, compiled once per dialect.

The hot paths of the store (read by id, insert a version, write index rows) are a
handful of statements whose shape never changes. SQLAlchemy builds and compiles
them once per dialect; they then run directly on the driver's cursor, which saves
the per-execution statement construction, cache-key and event overhead of the
Core execution path (about 10x on a read). Dynamic SQL — searches — stays on
SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

SQLITE_CHUNK = 64
"""Rows per multi-row INSERT of a large SQLite batch (e.g. the access log's)."""


class RawStatement:
    """A SQLAlchemy statement with its compiled SQL cached per dialect."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def compiled(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
        """The SQL text, and the parameter order when the driver takes positional ones."""
        key = dialect.name
        found = self._compiled.get(key)
        if found is None:
            compiled = self.statement.compile(
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
            assert isinstance(compiled, SQLCompiler)
            positions = compiled.positiontup if compiled.positional else None
            order = tuple(positions) if positions is not None else None
            found = (compiled.string, order)
            self._compiled[key] = found
        return found


class RawExecutor:
    """Runs RawStatements on one DBAPI connection inside the caller's transaction."""

    __slots__ = ("dbapi", "dialect")

    def __init__(self, dbapi: Any, dialect: Dialect) -> None:
        self.dbapi = dbapi
        self.dialect = dialect

    @classmethod
    def of(cls, conn: Connection) -> RawExecutor:
        """The executor sharing an open SQLAlchemy connection (and its transaction)."""
        return cls(conn.connection.driver_connection, conn.dialect)

    def _arguments(self, order: tuple[str, ...] | None, values: Mapping[str, Any]) -> Any:
        return tuple(values[name] for name in order) if order is not None else values

    def fetchone(self, statement: RawStatement, values: Mapping[str, Any]) -> Sequence[Any] | None:
        sql, order = statement.compiled(self.dialect)
        return self.fetchone_sql(sql, self._arguments(order, values))

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
        sql, order = statement.compiled(self.dialect)
        return self.fetchall_sql(sql, self._arguments(order, values))

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
        sql, order = statement.compiled(self.dialect)
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, self._arguments(order, values))
            count: int = cursor.rowcount
            return count
        finally:
            cursor.close()

    def executemany(self, statement: RawStatement, rows: Iterable[Mapping[str, Any]]) -> None:
        sql, order = statement.compiled(self.dialect)
        cursor = self.dbapi.cursor()
        try:
            cursor.executemany(sql, [self._arguments(order, row) for row in rows])
        finally:
            cursor.close()

    def insert_rows(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Inserts rows given as column → value mappings (see ``insert_values``)."""
        if rows:
            columns = table_columns(table)
            self.insert_values(table, list(map(itemgetter(*columns), rows)))

    def insert_values(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        """Inserts rows into one of the store's own tables in one round trip; each row
        holds a value for every column of ``table``, in the table's column order.

        SQLite takes them through ``executemany`` (a loop in C); PostgreSQL gets one
        multi-row ``INSERT … VALUES (…), (…)`` (psycopg's pipelined executemany costs
        more client CPU than the statement saves). Only identifiers of the schema are
        put into the SQL text; values are always bound.
        """
        if not rows:
            return
        columns = table_columns(table)
        names = ", ".join(columns)
        cursor = self.dbapi.cursor()
        try:
            if self.dialect.name != "postgresql":
                one = "(" + ", ".join("?" for _ in columns) + ")"
                # Large batches go in statements of SQLITE_CHUNK rows (one step each, so
                # the driver releases the GIL once per chunk, not once per row); the
                # rest through executemany. Two statement texts per table stay cached.
                full = len(rows) - len(rows) % SQLITE_CHUNK
                if full:
                    sql = f"INSERT INTO {table.name} ({names}) VALUES " + ", ".join(
                        one for _ in range(SQLITE_CHUNK)
                    )
                    for start in range(0, full, SQLITE_CHUNK):
                        cursor.execute(
                            sql, [v for row in rows[start : start + SQLITE_CHUNK] for v in row]
                        )
                if full < len(rows):
                    cursor.executemany(
                        f"INSERT INTO {table.name} ({names}) VALUES {one}", rows[full:]
                    )
                return
            one = "(" + ", ".join("%s" for _ in columns) + ")"
            sql = f"INSERT INTO {table.name} ({names}) VALUES " + ", ".join(one for _ in rows)
            cursor.execute(sql, [v for row in rows for v in row])
        finally:
            cursor.close()


def table_columns(table: Table) -> tuple[str, ...]:
    """The column names of one of the store's tables, in order (cached on the table)."""
    columns: tuple[str, ...] | None = table.info.get("column_names")
    if columns is None:
        columns = table.info["column_names"] = tuple(c.name for c in table.columns)
    return columns


def json_column(value: Any) -> Any:
    """A JSON column as a driver returns it: text on SQLite, decoded on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
