"""Search-index rows of a resource (search.html §3.1.1.4, R4).

Every search parameter of the resource's type (gateway.search.registry) is evaluated and
each value is indexed by parameter type and value shape:

- token (§3.1.1.4.10): code/string/uri/boolean primitives, Coding, CodeableConcept,
  Identifier, ContactPoint → ``sp_token(system, code, text)``;
- string (§3.1.1.4.7): strings, HumanName and Address parts → ``sp_string``;
- reference (§3.1.1.4.8): Reference and canonical/uri values → ``sp_reference``;
- date (§3.1.1.4.3): date/dateTime/instant, Period, Timing → ``sp_date [low, high)``;
- number (§3.1.1.4.1) and quantity (§3.1.1.4.9) → ``sp_number``;
- uri (§3.1.1.4.11) → ``sp_uri``.

``_id`` and ``_lastUpdated`` live on the ``resource`` table; composite and special
parameters are not indexed here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from gateway.search.fhirpath import Evaluator, compile_path, leading_member, parse_reference
from gateway.search.registry import STRING_PARTS, params_for
from gateway.search.values import date_range, normalize_string, number_range
from gateway.store.schema import INDEX_TABLES

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "INDEXED_TABLE_KEYS",
    "INDEX_COLUMNS",
    "extract_index_rows",
    "extract_param_rows",
]

log = logging.getLogger(__name__)

INDEXED_TABLE_KEYS: tuple[str, ...] = tuple(INDEX_TABLES)

# Columns of each index table written by extraction (all but resource_pk and res_type),
# in table order; rows are built as tuples in this order.
INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    key: tuple(c.name for c in table.columns if c.name not in ("resource_pk", "res_type"))
    for key, table in INDEX_TABLES.items()
}

# Open ends of a Period (search.html §3.1.1.4.3: a missing start/end is unbounded).
DATE_MIN = -(2**62)
DATE_MAX = 2**62

SKIPPED_PARAMS = frozenset({"_id", "_lastUpdated"})
SKIPPED_TYPES = frozenset({"composite", "special"})

_TOKEN_MAX = 256
_NUMBER_CODE_MAX = 64
_URL_MAX = 512

# Values repeat within a resource (a name part feeds name, given, phonetic…) and across
# resources (places, displays, dates); both functions are pure.
_normalize = lru_cache(maxsize=1 << 16)(normalize_string)
_date_range = lru_cache(maxsize=1 << 16)(date_range)

_Row = tuple[Any, ...]
_Add = Callable[[str, _Row], None]
_Indexer = Callable[[str, list[Any], _Add], None]


def _text(value: Any) -> str | None:
    if type(value) is not str:
        return None
    return _normalize(value) or None


def _cut(value: Any, limit: int) -> str | None:
    if type(value) is not str or not value:
        return None
    return value[:limit]


# --------------------------------------------------------------------------- token


def _token_dict(param: str, value: dict[str, Any], add: _Add) -> None:
    if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
        # CodeableConcept
        text = _text(value.get("text"))
        codings = value.get("coding")
        rows = 0
        if type(codings) is list:
            for coding in codings:
                if type(coding) is dict:
                    system, code = (
                        _cut(coding.get("system"), _TOKEN_MAX),
                        _cut(coding.get("code"), _TOKEN_MAX),
                    )
                    coding_text = text or _text(coding.get("display"))
                    if system or code or coding_text:
                        add("token", (param, system, code, coding_text))
                        rows += 1
        if not rows and text:
            add("token", (param, None, None, text))
        return
    system = _cut(value.get("system"), _TOKEN_MAX)
    if "code" in value or "display" in value:
        # Coding
        code = _cut(value.get("code"), _TOKEN_MAX)
        text = _text(value.get("display"))
    else:
        # Identifier, ContactPoint
        code = _cut(value.get("value"), _TOKEN_MAX)
        kind = value.get("type")
        text = _text(kind.get("text")) if type(kind) is dict else None
    if system or code or text:
        add("token", (param, system, code, text))


def _index_token(param: str, values: list[Any], add: _Add) -> None:
    for value in values:
        kind = type(value)
        if kind is str:
            if value:
                add("token", (param, None, value[:_TOKEN_MAX], None))
        elif kind is bool:
            add("token", (param, None, "true" if value else "false", None))
        elif kind is dict:
            _token_dict(param, value, add)
        elif kind is int or kind is Decimal:
            add("token", (param, None, str(value), None))


# --------------------------------------------------------------------------- string


def _add_string(param: str, value: Any, add: _Add) -> None:
    if type(value) is str:
        norm = _normalize(value)
        if norm:
            add("string", (param, norm, value))


def _string_indexer(parts: tuple[str, ...]) -> _Indexer:
    """Indexes strings, and the ``parts`` of HumanName and Address values (R4
    search.html#string: every part is searchable)."""

    def index(param: str, values: list[Any], add: _Add) -> None:
        for value in values:
            if type(value) is str:
                _add_string(param, value, add)
            elif type(value) is dict:
                for part in parts:
                    item = value.get(part)
                    if type(item) is list:
                        for entry in item:
                            _add_string(param, entry, add)
                    elif item is not None:
                        _add_string(param, item, add)

    return index


_index_string = _string_indexer(STRING_PARTS)


# --------------------------------------------------------------------------- reference


def _index_reference(param: str, values: list[Any], add: _Add) -> None:
    for value in values:
        if type(value) is dict:
            reference = value.get("reference")
            if type(reference) is not str or not reference or reference.startswith("#"):
                continue
            parsed = parse_reference(reference)
            if parsed is not None:
                url = reference[:_URL_MAX] if parsed.base is not None else None
                add("reference", (param, parsed.type, parsed.id, url))
            elif ":" in reference:
                add("reference", (param, None, None, reference[:_URL_MAX]))
        elif type(value) is str and value:
            # canonical / uri (search.html §3.1.1.4.8, versioned canonical "url|version")
            url = value.split("|", 1)[0]
            if url:
                add("reference", (param, None, None, url[:_URL_MAX]))


# --------------------------------------------------------------------------- date


def _add_period(param: str, period: dict[str, Any], add: _Add) -> None:
    start, end = period.get("start"), period.get("end")
    if start is None and end is None:
        return
    try:
        low = _date_range(start)[0] if type(start) is str else DATE_MIN
        high = _date_range(end)[1] if type(end) is str else DATE_MAX
    except ValueError:
        return
    add("date", (param, low, high))


def _add_date(param: str, text: Any, add: _Add) -> None:
    if type(text) is str:
        try:
            low, high = _date_range(text)
        except ValueError:
            return
        add("date", (param, low, high))


def _index_date(param: str, values: list[Any], add: _Add) -> None:
    for value in values:
        if type(value) is str:
            _add_date(param, value, add)
        elif type(value) is dict:
            if "start" in value or "end" in value:
                _add_period(param, value, add)
            else:
                # Timing: its events and its repeat.boundsPeriod
                events = value.get("event")
                if type(events) is list:
                    for event in events:
                        _add_date(param, event, add)
                repeat = value.get("repeat")
                if type(repeat) is dict:
                    bounds = repeat.get("boundsPeriod")
                    if type(bounds) is dict:
                        _add_period(param, bounds, add)


# --------------------------------------------------------------------------- number


def _number(value: Any) -> tuple[float, float, float] | None:
    kind = type(value)
    if kind is not int and kind is not float and kind is not Decimal:
        return None
    try:
        return number_range(str(value))
    except ValueError:
        return None


def _index_number(param: str, values: list[Any], add: _Add) -> None:
    for value in values:
        number = _number(value)
        if number is not None:
            add("number", (param, *number, None, None))


def _index_quantity(param: str, values: list[Any], add: _Add) -> None:
    for value in values:
        if type(value) is dict:
            number = _number(value.get("value"))
            if number is None:
                continue
            if "currency" in value:
                # Money
                add("number", (param, *number, None, _cut(value["currency"], _NUMBER_CODE_MAX)))
            else:
                system = _cut(value.get("system"), _TOKEN_MAX)
                code = _cut(value.get("code"), _NUMBER_CODE_MAX)
                add("number", (param, *number, system, code))
        else:
            _index_number(param, [value], add)


# --------------------------------------------------------------------------- uri


def _index_uri(param: str, values: list[Any], add: _Add) -> None:
    for value in values:
        if type(value) is str and value:
            add("uri", (param, value[:_URL_MAX]))


_INDEXERS: dict[str, _Indexer] = {
    "token": _index_token,
    "string": _index_string,
    "reference": _index_reference,
    "date": _index_date,
    "number": _index_number,
    "quantity": _index_quantity,
    "uri": _index_uri,
}


_BUILDERS: dict[str, Callable[[_Row], dict[str, Any]]] = {
    "token": lambda r: {"param": r[0], "system": r[1], "code": r[2], "text": r[3]},
    "string": lambda r: {"param": r[0], "value_norm": r[1], "value_exact": r[2]},
    "reference": lambda r: {
        "param": r[0],
        "target_type": r[1],
        "target_id": r[2],
        "target_url": r[3],
    },
    "date": lambda r: {"param": r[0], "low": r[1], "high": r[2]},
    "number": lambda r: {
        "param": r[0],
        "value": r[1],
        "low": r[2],
        "high": r[3],
        "system": r[4],
        "code": r[5],
    },
    "uri": lambda r: {"param": r[0], "value": r[1]},
}
for _key, _columns in INDEX_COLUMNS.items():
    if tuple(_BUILDERS[_key](tuple(range(len(_columns))))) != _columns:
        raise RuntimeError(f"index row builder of {_key!r} does not match the schema")


@lru_cache(maxsize=128)
def _plan(resource_type: str) -> tuple[tuple[str, _Indexer, Evaluator, str | None], ...]:
    """Per type: (param code, indexer, compiled expression, the element without which the
    expression is empty, if there is one) of every indexed parameter.

    A string parameter whose values another one stores (``SearchParam.stored_in``) is
    left out, and one on HumanName or Address skips the parts stored elsewhere.
    """
    plan: list[tuple[str, _Indexer, Evaluator, str | None]] = []
    for code, param in params_for(resource_type).items():
        if code in SKIPPED_PARAMS or param.type in SKIPPED_TYPES:
            continue
        indexer = _INDEXERS[param.type]
        if param.type == "string":
            if param.stored_in and param.stored_in[0] != code:
                continue
            if param.parts_stored_elsewhere:
                indexer = _string_indexer(
                    tuple(p for p in STRING_PARTS if p not in param.parts_stored_elsewhere)
                )
        expression = param.expression
        plan.append((code, indexer, compile_path(expression), leading_member(expression)))
    return tuple(plan)


def extract_index_rows(resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows of every ``sp_*`` table (INDEX_TABLES key → rows) for ``resource``.

    Each row has ``param`` and the value columns of its table (not ``resource_pk`` or
    ``res_type``); rows are unique within the resource.
    """
    found: dict[str, dict[_Row, None]] = {key: {} for key in INDEXED_TABLE_KEYS}

    def add(table: str, row: _Row) -> None:
        found[table][row] = None

    for code, indexer, evaluate, member in _plan(resource.get("resourceType", "")):
        if member is not None and member not in resource:
            continue  # most parameters of a type find nothing in a given resource
        try:
            values = evaluate(resource)
        except Exception:
            log.warning("search parameter %s: expression failed", code, exc_info=True)
            continue
        if values:
            indexer(code, values, add)
    return {key: list(map(_BUILDERS[key], rows)) for key, rows in found.items()}


def extract_param_rows(resource: dict[str, Any], code: str) -> list[dict[str, Any]]:
    """The index rows of one search parameter of ``resource`` (any table), with all its
    values, also those the index stores under another parameter."""
    param = params_for(resource.get("resourceType", "")).get(code)
    if param is None or code in SKIPPED_PARAMS or param.type in SKIPPED_TYPES:
        return []
    rows: dict[tuple[str, _Row], None] = {}

    def add(table: str, row: _Row) -> None:
        rows[(table, row)] = None

    values = compile_path(param.expression)(resource)
    if values:
        _INDEXERS[param.type](code, values, add)
    return [_BUILDERS[table](row) for table, row in rows]
