"""PostgreSQL rows bound as one JSON text: the statement parts and the JSON they read."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import JSON, Column, Float, Integer, LargeBinary, MetaData, String, Table

from gateway.store import pg_json
from gateway.store.schema import resource, sp_number, sp_token

_METADATA = MetaData()
_MIXED = Table(
    "mixed",
    _METADATA,
    Column("n", Integer),
    Column("name", String(8)),
    Column("record", JSON),
    Column("ratio", Float),
)


def test_columns_are_read_with_their_base_types_and_json_is_cast() -> None:
    selected, source = pg_json.expand(_MIXED, ["n", "name", "record", "ratio"], "%s")
    assert selected == 'u."n", u."name", CAST(u."record" AS JSON), u."ratio"'
    assert source == (
        "json_to_recordset(CAST(%s AS JSON)) AS u "
        '("n" BIGINT, "name" TEXT, "record" TEXT, "ratio" FLOAT8)'
    )


def test_floats_go_as_text_so_that_infinities_survive() -> None:
    rows: list[dict[str, object]] = [
        {"param": "v", "value": 2, "low": float("-inf"), "high": 1.5, "system": None},
        {"param": "v", "value": None, "low": 0.1, "high": float("inf"), "system": "s"},
    ]
    assert orjson.loads(pg_json.rows_json(sp_number, rows)) == [
        {"param": "v", "value": "2.0", "low": "-inf", "high": "1.5", "system": None},
        {"param": "v", "value": None, "low": "0.1", "high": "inf", "system": "s"},
    ]


def test_a_float_column_a_row_leaves_out_goes_as_null() -> None:
    assert orjson.loads(pg_json.rows_json(_MIXED, [{"n": 1}])) == [{"n": 1, "ratio": None}]


def test_rows_of_a_table_without_floats_go_as_given() -> None:
    rows = ({"resource_pk": n, "param": "p", "code": "c"} for n in range(2))
    assert orjson.loads(pg_json.rows_json(sp_token, rows)) == [
        {"resource_pk": 0, "param": "p", "code": "c"},
        {"resource_pk": 1, "param": "p", "code": "c"},
    ]


def test_a_binary_column_is_refused() -> None:
    assert isinstance(resource.c.body.type, LargeBinary)
    with pytest.raises(TypeError, match=r"resource\.body is binary"):
        pg_json.expand(resource, ["res_id", "body"], "%s")
