"""PostgreSQL: any number of rows bound as one JSON text.

The rows go as a JSON array of objects keyed by column name and are expanded into
typed columns by ``json_to_recordset`` (PostgreSQL 15 manual §9.16). One parameter
holds every row, so the statement text is the same for any number of rows (the driver
parses and prepares it once) and the driver sends a single string where a value or an
array per column had it inspect and dump every element in Python.

The record columns have the unbounded base type of each column, so the ``INSERT``
still checks every value against its column (length limits included). A JSON column
is read as text and cast, so its value may be a JSON object or the JSON text of one.
Floating-point values go as text, read by FLOAT8's own input (JSON has no infinity).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Integer, LargeBinary, Table


def _record_type(column: Column[Any]) -> str:
    column_type = column.type
    if isinstance(column_type, BigInteger | Integer):
        return "BIGINT"
    if isinstance(column_type, Float):
        return "FLOAT8"
    if isinstance(column_type, Boolean):
        return "BOOLEAN"
    if isinstance(column_type, LargeBinary):
        raise TypeError(f"{column.table.name}.{column.name} is binary, which JSON cannot carry")
    return "TEXT"


def expand(table: Table, columns: Sequence[str], placeholder: str) -> tuple[str, str]:
    """The select list and the ``FROM`` item that turn the JSON bound at ``placeholder``
    into ``columns`` of ``table`` (the item is aliased ``u``)."""
    record = ", ".join(f'"{name}" {_record_type(table.c[name])}' for name in columns)
    selected = ", ".join(
        f'CAST(u."{name}" AS JSON)' if isinstance(table.c[name].type, JSON) else f'u."{name}"'
        for name in columns
    )
    return selected, f"json_to_recordset(CAST({placeholder} AS JSON)) AS u ({record})"


def rows_json(table: Table, rows: Iterable[Mapping[str, Any]]) -> str:
    """``rows`` (column name → value) as the JSON text :func:`expand` reads."""
    floats = _float_columns(table)
    if floats:
        rows = [{**row, **{name: _float_text(row.get(name)) for name in floats}} for row in rows]
    elif not isinstance(rows, list):
        rows = list(rows)
    return orjson.dumps(rows).decode()


def _float_columns(table: Table) -> tuple[str, ...]:
    found: tuple[str, ...] | None = table.info.get("float_columns")
    if found is None:
        # Plain strings: a Column's name is a str subclass, which orjson takes as no key.
        found = table.info["float_columns"] = tuple(
            str(c.name) for c in table.columns if isinstance(c.type, Float)
        )
    return found


def _float_text(value: Any) -> str | None:
    return None if value is None else repr(float(value))
