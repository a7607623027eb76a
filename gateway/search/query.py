"""Execution of FHIR R4 searches as SQLAlchemy Core queries (search.html).

Every criterion becomes a condition on the ``resource`` table, typically
``resource.pk IN (SELECT resource_pk FROM sp_<type> WHERE res_type = :t AND param = :p AND …)``,
so a single-criterion search is one indexed lookup joined to ``resource`` by primary key.
Pages are cut with keyset conditions on the sort columns (never OFFSET), so paging stays
correct while other transactions write; see ``gateway.search.cursor``. A search whose
values can be bound as they are is built and compiled once per shape and then runs on
the driver cursor with each search's values (``gateway.search.shapes``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    Connection,
    FromClause,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from gateway.errors import InvalidSearch
from gateway.search.cursor import ColumnKind, Cursor, CursorValue, decode_cursor, encode_cursor
from gateway.search.params import (
    Criterion,
    DateValue,
    Include,
    MissingValue,
    NumberValue,
    ReferenceValue,
    SearchRequest,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
    parse_search,
)
from gateway.search.registry import get_param
from gateway.search.shapes import Shape, bound_cursor, shape_of
from gateway.search.values import StringOperands, string_operands, to_micros
from gateway.store.raw import Arguments, RawExecutor, compile_statement
from gateway.store.repository import KeyedVisibility, Visibility
from gateway.store.schema import INDEX_TABLES, resource, sp_reference

_DAY_MICROS = 86_400 * 1_000_000
# Up to this many index rows, a criterion's ``pk IN (…)`` list drives a SQLite query.
_DRIVER_LIMIT = 1000
_ROW_COLUMNS = (
    resource.c.pk,
    resource.c.res_type,
    resource.c.res_id,
    resource.c.version,
    resource.c.last_updated,
    resource.c.body,
    resource.c.custodian,
    resource.c.client,
)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """The current version of one stored resource."""

    pk: int
    res_type: str
    res_id: str
    version: int
    last_updated: int
    body: bytes
    custodian: str | None = None
    client: str | None = None


@dataclass(slots=True)
class SearchPage:
    """One page of a search: the matches, the ``_include``/``_revinclude`` resources, the total
    (None for ``_total=none``) and the cursors of the neighbouring pages."""

    matches: list[StoredRow]
    included: list[StoredRow]
    total: int | None
    next_cursor: str | None
    previous_cursor: str | None


def _stored_row(row: Sequence[Any]) -> StoredRow:
    """A row that starts with ``_ROW_COLUMNS`` (a Core row or a driver's tuple)."""
    pk, res_type, res_id, version, last_updated, body, custodian, client = row[:8]
    return StoredRow(
        pk=pk,
        res_type=res_type,
        res_id=res_id,
        version=version,
        last_updated=last_updated,
        body=bytes(body) if body is not None else b"",
        custodian=custodian,
        client=client,
    )


@dataclass(frozen=True, slots=True)
class _CompiledSearch:
    """A search statement compiled for one shape: its SQL text, how to pass it values by
    name, and the values of everything but the search's own (types, parameter codes, the
    page size, the access policy's condition)."""

    sql: str
    reader: Arguments
    fixed: dict[str, Any]
    visibility: Visibility | None
    """Kept so that the objects named by its key stay alive as long as the entry."""

    @classmethod
    def of(
        cls, statement: Select[Any], dialect: Dialect, visibility: Visibility | None
    ) -> _CompiledSearch:
        sql, reader, compiled = compile_statement(statement, dialect)
        return cls(sql, reader, dict(compiled.construct_params()), visibility)

    def arguments(self, *values: Mapping[str, Any]) -> Any:
        """The driver's arguments for one search's values by parameter name."""
        merged = dict(self.fixed)
        for more in values:
            merged.update(more)
        return self.reader(merged)


_COMPILED_SEARCHES: dict[
    tuple[str, str, Hashable, Hashable, tuple[int, bool] | None], _CompiledSearch
] = {}
"""Compiled searches by (use, dialect, shape, access-policy key, SQLite's way in);
emptied when full."""
_COMPILED_SEARCH_LIMIT = 1024


def _now_micros() -> int:
    return to_micros(datetime.now(UTC))


def _uri_prefixes(uri: str) -> list[str]:
    """``uri`` and each of its leading path segments, for ``:above`` (search.html §3.1.1.4.12)."""
    prefixes = {uri}
    for index, char in enumerate(uri):
        if (
            char == "/"
            and index > 0
            and uri[index - 1] != "/"
            and uri[index + 1 : index + 2] != "/"
        ):
            prefixes.add(uri[:index])
            prefixes.add(uri[: index + 1])
    return sorted(prefixes)


# --------------------------------------------------------------------------- criteria


class _ConditionBuilder:
    """Turns criteria into conditions on a ``resource`` table or alias (search.html §3.1.1.4).

    On SQLite the plans are shaped by the query text, because its planner has no value
    statistics unless ANALYZE has run: a ``res_type`` comparison that must not become the
    access path is written so that no index can serve it (``res_type || '' = :t``), which
    leaves the ``pk IN (…)`` lookups, or the ``resource_pk`` index of a correlated
    subquery, as the only indexed way in.
    """

    def __init__(self, dialect_name: str, now: int, visibility: Visibility | None = None) -> None:
        self.sqlite = dialect_name == "sqlite"
        self.now = now
        self.visibility = visibility

    def type_filter(
        self, res: FromClause, resource_type: str, *, indexable: bool
    ) -> ColumnElement[bool]:
        """``res.res_type = :t``; on SQLite unusable as an index key unless ``indexable``."""
        if res is resource:
            return _resource_type_is(resource_type, self.sqlite and not indexable)
        return self.key_filter(res.c.res_type, resource_type, indexable=indexable)

    def key_filter(self, column: Any, value: str, *, indexable: bool) -> ColumnElement[bool]:
        """``column = :value``; on SQLite unusable as an index key unless ``indexable``."""
        if self.sqlite and not indexable:
            return column.concat("") == value  # type: ignore[no-any-return]
        return column == value  # type: ignore[no-any-return]

    # -- entry points

    def condition(self, criterion: Criterion, res: FromClause) -> ColumnElement[bool]:
        """The condition that a row of ``res`` (of ``criterion.resource_type``) matches."""
        positive = self.matching_pks(criterion)
        if positive is not None:
            return res.c.pk.in_(positive)
        if criterion.has_source is not None:
            return self._reverse_chain(criterion, res)
        param = criterion.param
        if param.code == "_id":
            return self._id(criterion, res)
        if param.code == "_lastUpdated":
            return self._last_updated(criterion, res)
        kind = _table_kind(param.type)
        table = INDEX_TABLES[kind]
        if any(isinstance(v, MissingValue) for v in criterion.values):
            return self._missing(criterion, kind, res)
        assert criterion.modifier == "not"
        rows = self._rows(kind, criterion.resource_type, param.code, correlated_to=res)
        return ~exists(rows.where(_any(self._value_conditions(criterion, table))))

    def matching_pks(
        self, criterion: Criterion, *, correlated_to: FromClause | None = None
    ) -> Select[Any] | None:
        """``SELECT resource_pk`` of the index rows that match, for criteria that only need
        rows to exist; None for the others (``:not``, ``:missing``, ``_id``, ``_has``…).

        With ``correlated_to`` the rows are those of that resource row (for ``EXISTS``).
        """
        param = criterion.param
        if not _is_positive(criterion):
            return None
        if not criterion.values:
            return self._chain(criterion, correlated_to)
        kind = _table_kind(param.type)
        rows = self._rows(kind, criterion.resource_type, param.code, correlated_to=correlated_to)
        return rows.where(_any(self._value_conditions(criterion, INDEX_TABLES[kind])))

    def _rows(
        self, kind: str, resource_type: str, code: str, *, correlated_to: FromClause | None
    ) -> Select[Any]:
        """The index rows of one parameter, or those of one resource row for a correlated
        subquery (answered from the ``resource_pk`` index)."""
        if correlated_to is None:
            return _param_rows(kind, resource_type, code)
        table = INDEX_TABLES[kind]
        rows = _param_rows_of_resource(kind, resource_type, code, self.sqlite)
        return rows.where(table.c.resource_pk == correlated_to.c.pk)

    # -- special parameters

    def _id(self, criterion: Criterion, res: FromClause) -> ColumnElement[bool]:
        if any(isinstance(v, MissingValue) for v in criterion.values):
            return _missing_never(criterion)
        ids = [v.code for v in criterion.values if isinstance(v, TokenValue) and v.code is not None]
        if criterion.modifier == "not":
            return res.c.res_id.not_in(ids)
        return res.c.res_id.in_(ids)

    def _last_updated(self, criterion: Criterion, res: FromClause) -> ColumnElement[bool]:
        if any(isinstance(v, MissingValue) for v in criterion.values):
            return _missing_never(criterion)
        column = res.c.last_updated
        return or_(
            *(self._instant(v, column) for v in criterion.values if isinstance(v, DateValue))
        )

    def _missing(self, criterion: Criterion, kind: str, res: FromClause) -> ColumnElement[bool]:
        wanted = {v.missing for v in criterion.values if isinstance(v, MissingValue)}
        if wanted == {True, False}:
            return true()
        code = criterion.param.code
        if True in wanted:
            return ~exists(self._rows(kind, criterion.resource_type, code, correlated_to=res))
        return res.c.pk.in_(self._rows(kind, criterion.resource_type, code, correlated_to=None))

    # -- chains (§3.1.1.4.13, §3.1.1.4.14)

    def _subject_rows(self, target: FromClause, criterion: Criterion) -> list[ColumnElement[bool]]:
        """Current rows of ``target`` (an alias of ``resource``) that match ``criterion``."""
        positive = self.matching_pks(criterion) is not None
        conditions = [
            self.type_filter(target, criterion.resource_type, indexable=not positive),
            target.c.deleted.is_(False),
            self.condition(criterion, target),
        ]
        if self.visibility is not None:
            # A chain may not reveal anything of a resource the requester cannot see.
            conditions.append(self.visibility(target, criterion.resource_type))
        return conditions

    def _chain(self, criterion: Criterion, correlated_to: FromClause | None) -> Select[Any]:
        per_target: list[ColumnElement[bool]] = []
        for inner in criterion.chained:
            target = resource.alias()
            target_ids = select(target.c.res_id).where(*self._subject_rows(target, inner))
            per_target.append(
                and_(
                    sp_reference.c.target_type == inner.resource_type,
                    sp_reference.c.target_id.in_(target_ids),
                )
            )
        rows = self._rows(
            "reference", criterion.resource_type, criterion.param.code, correlated_to=correlated_to
        )
        return rows.where(or_(false(), *per_target))

    def _reverse_chain(self, criterion: Criterion, res: FromClause) -> ColumnElement[bool]:
        assert criterion.has_source is not None
        source = resource.alias()
        (inner,) = criterion.chained
        sources = select(source.c.pk).where(*self._subject_rows(source, inner))
        # The references are reached through the ``resource_pk`` index of the sources.
        referenced_ids = select(sp_reference.c.target_id).where(
            self.key_filter(sp_reference.c.res_type, criterion.has_source, indexable=False),
            sp_reference.c.param == criterion.param.code,
            self.key_filter(sp_reference.c.target_type, criterion.resource_type, indexable=False),
            sp_reference.c.resource_pk.in_(sources),
        )
        return res.c.res_id.in_(referenced_ids)

    # -- values

    def _value_conditions(self, criterion: Criterion, table: Any) -> list[ColumnElement[bool]]:
        modifier = criterion.modifier
        kind = criterion.param.type
        values = criterion.values
        if kind == "token" and modifier == "text":
            return [self._starts_with(table.c.text, _string_operands(v)) for v in values]
        if kind == "token":
            return _token_conditions([v for v in values if isinstance(v, TokenValue)], table)
        if kind == "string":
            return [self._string(_string_operands(v), modifier, table) for v in values]
        if kind == "reference":
            return [_reference(v) for v in values if isinstance(v, ReferenceValue)]
        if kind == "date":
            return [
                self._range(v, table.c.low, table.c.high)
                for v in values
                if isinstance(v, DateValue)
            ]
        if kind in ("number", "quantity"):
            return [self._number(v, table) for v in values if isinstance(v, NumberValue)]
        return [self._uri(v, modifier, table) for v in values if isinstance(v, UriValue)]

    def _starts_with(self, column: Any, prefix: StringOperands) -> ColumnElement[bool]:
        """``column`` starts with ``prefix.normalized``, as a range of code points that an
        index answers.

        SQLite's BINARY collation compares code points. PostgreSQL compares in the "C"
        collation (UTF-8 bytes, so code points too) whatever the database collation is; an
        index on ``value COLLATE "C"`` serves it.
        """
        if prefix.empty:
            return column.is_not(None)  # type: ignore[no-any-return]
        if not prefix.bounded:
            return self._like(column, prefix.starts_like)
        compared = column if self.sqlite else column.collate("C")
        return and_(compared >= prefix.normalized, compared < prefix.upper)

    def _like(self, column: Any, pattern: str) -> ColumnElement[bool]:
        # A backslash escapes LIKE wildcards by default on PostgreSQL; SQLite needs ESCAPE.
        return column.like(pattern, escape="\\" if self.sqlite else None)  # type: ignore[no-any-return]

    def _string(
        self, value: StringOperands, modifier: str | None, table: Any
    ) -> ColumnElement[bool]:
        """search.html §3.1.1.4.7: starts-with by default, ``:exact``, ``:contains``."""
        if modifier == "exact":
            return and_(table.c.value_norm == value.normalized, table.c.value_exact == value.text)
        if modifier == "contains":
            return self._like(table.c.value_norm, value.contains_like)
        return self._starts_with(table.c.value_norm, value)

    def _range(self, value: DateValue, low: Any, high: Any) -> ColumnElement[bool]:
        """A target range ``[low, high)`` against a prefixed search range (§3.1.1.4.1.1).

        Indexed ranges are never empty (low < high), so "contained" also bounds ``low`` from
        above and ``ge``/``le`` get a one-column bound; both only let the indexes narrow the
        scan and do not change the result.
        """
        search_low, search_high = value.low, value.high
        contained = and_(low >= search_low, low < search_high, high <= search_high)
        match value.prefix:
            case "ne":
                return or_(low < search_low, high > search_high)
            case "gt":
                return high > search_high  # type: ignore[no-any-return]
            case "lt":
                return low < search_low  # type: ignore[no-any-return]
            case "ge":
                return and_(high > search_low, or_(high > search_high, contained))
            case "le":
                return and_(low < search_high, or_(low < search_low, contained))
            case "sa":
                return low >= search_high  # type: ignore[no-any-return]
            case "eb":
                return high <= search_low  # type: ignore[no-any-return]
            case "ap":
                margin = self._approximate_margin(value)
                return and_(low < search_high + margin, high > search_low - margin)
            case _:
                return contained

    def _instant(self, value: DateValue, column: Any) -> ColumnElement[bool]:
        """``_lastUpdated``: the stored instant as the point range ``[v, v + 1)``."""
        search_low, search_high = value.low, value.high
        match value.prefix:
            case "ne":
                return or_(column < search_low, column >= search_high)
            case "gt" | "sa":
                return column >= search_high  # type: ignore[no-any-return]
            case "lt" | "eb":
                return column < search_low  # type: ignore[no-any-return]
            case "ge":
                return column >= search_low  # type: ignore[no-any-return]
            case "le":
                return column < search_high  # type: ignore[no-any-return]
            case "ap":
                margin = self._approximate_margin(value)
                return and_(column >= search_low - margin, column < search_high + margin)
            case _:
                return and_(column >= search_low, column < search_high)

    def _approximate_margin(self, value: DateValue) -> int:
        """10% of the distance between the search value and now, at least a day (§3.1.1.4.1.1)."""
        return max(abs(self.now - value.low) // 10, _DAY_MICROS)

    def _number(self, value: NumberValue, table: Any) -> ColumnElement[bool]:
        """search.html §3.1.1.4.1 / §3.1.1.4.11: eq is the implicit range of the search value."""
        column = table.c.value
        conditions: list[ColumnElement[bool]] = []
        match value.prefix:
            case "ne":
                conditions.append(or_(column < value.low, column >= value.high))
            case "gt" | "sa":
                conditions.append(column > value.value)
            case "lt" | "eb":
                conditions.append(column < value.value)
            case "ge":
                conditions.append(column >= value.value)
            case "le":
                conditions.append(column <= value.value)
            case "ap":
                margin = max(abs(value.value) / 10, (value.high - value.low) / 2)
                conditions.append(
                    and_(column >= value.value - margin, column <= value.value + margin)
                )
            case _:
                conditions.append(and_(column >= value.low, column < value.high))
        if value.system is not None:
            conditions.append(table.c.system == value.system)
        if value.code is not None:
            conditions.append(table.c.code == value.code)
        return and_(*conditions)

    def _uri(self, value: UriValue, modifier: str | None, table: Any) -> ColumnElement[bool]:
        if modifier == "below":
            return self._starts_with(
                table.c.value, string_operands(value.uri, normalized=value.uri)
            )
        if modifier == "above":
            return table.c.value.in_(_uri_prefixes(value.uri))  # type: ignore[no-any-return]
        return table.c.value == value.uri  # type: ignore[no-any-return]


_NOT_DELETED: ColumnElement[bool] = resource.c.deleted.is_(False)

# Expressions are immutable, so the parts shared by many queries are built only once.


@lru_cache(maxsize=256)
def _resource_type_is(resource_type: str, unindexed: bool) -> ColumnElement[bool]:
    column = resource.c.res_type.concat("") if unindexed else resource.c.res_type
    return column == resource_type


@lru_cache(maxsize=4096)
def _param_rows(kind: str, resource_type: str, code: str) -> Select[Any]:
    """``SELECT resource_pk FROM sp_<kind> WHERE res_type = :t AND param = :p``."""
    table = INDEX_TABLES[kind]
    return select(table.c.resource_pk).where(
        table.c.res_type == resource_type, _param_is(table, resource_type, code)
    )


@lru_cache(maxsize=4096)
def _param_rows_of_resource(kind: str, resource_type: str, code: str, sqlite: bool) -> Select[Any]:
    """Like ``_param_rows``, for subqueries correlated on ``resource_pk``: on SQLite the type
    is compared so that only the ``resource_pk`` index can serve the lookup."""
    table = INDEX_TABLES[kind]
    type_column = table.c.res_type.concat("") if sqlite else table.c.res_type
    return select(table.c.resource_pk).where(
        type_column == resource_type, _param_is(table, resource_type, code)
    )


def _param_is(table: Any, resource_type: str, code: str) -> ColumnElement[bool]:
    """Index rows of parameter ``code``: for a string parameter, the rows of every
    parameter that stores its values (``SearchParam.stored_in``)."""
    param = get_param(resource_type, code)
    codes = param.stored_in if param is not None and param.stored_in else (code,)
    if len(codes) == 1:
        return cast(ColumnElement[bool], table.c.param == codes[0])
    return cast(ColumnElement[bool], table.c.param.in_(codes))


def _any(conditions: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def _table_kind(param_type: str) -> str:
    return "number" if param_type == "quantity" else param_type


def _string_operands(value: object) -> StringOperands:
    """A string value's operands; a compiled shape's template holds them already."""
    if isinstance(value, StringOperands):
        return value
    assert isinstance(value, StringValue)
    return string_operands(value.text)


def _is_positive(criterion: Criterion) -> bool:
    """Whether matching ``criterion`` only needs index rows to exist (``matching_pks``);
    not so for ``:not``, ``:missing``, ``_id``, ``_lastUpdated`` and ``_has``."""
    return not (
        criterion.has_source is not None
        or criterion.param.code in ("_id", "_lastUpdated")
        or criterion.modifier == "not"
        or any(isinstance(v, MissingValue) for v in criterion.values)
    )


def _is_lookup(criterion: Criterion) -> bool:
    """A criterion that names one or a few resources: a business identifier, a reference
    to a given id, or a chain (which resolves its targets first)."""
    if not criterion.values:
        return True
    if criterion.param.type == "reference":
        return all(
            isinstance(v, ReferenceValue) and v.target_id is not None for v in criterion.values
        )
    return criterion.param.code == "identifier" and criterion.modifier is None


def _missing_never(criterion: Criterion) -> ColumnElement[bool]:
    """``_id`` and ``_lastUpdated`` are never missing."""
    wanted = {v.missing for v in criterion.values if isinstance(v, MissingValue)}
    return true() if False in wanted else false()


def _token_conditions(values: list[TokenValue], table: Any) -> list[ColumnElement[bool]]:
    """search.html §3.1.1.4.9: ``code``, ``system|code``, ``|code`` and ``system|``."""
    bare_codes = [v.code for v in values if not v.match_system and v.code is not None]
    conditions: list[ColumnElement[bool]] = []
    if len(bare_codes) == 1:
        conditions.append(table.c.code == bare_codes[0])
    elif bare_codes:
        conditions.append(table.c.code.in_(bare_codes))
    for value in values:
        if not value.match_system:
            continue
        parts: list[ColumnElement[bool]] = []
        if value.code is not None:
            parts.append(table.c.code == value.code)
        parts.append(
            table.c.system == value.system if value.system is not None else table.c.system.is_(None)
        )
        conditions.append(and_(*parts))
    return conditions


def _reference(value: ReferenceValue) -> ColumnElement[bool]:
    """search.html §3.1.1.4.10: ``Type/id``, a bare id or an absolute URL / canonical."""
    by_id: ColumnElement[bool] | None = None
    if value.target_id is not None:
        by_id = sp_reference.c.target_id == value.target_id
        if value.target_type is not None:
            by_id = and_(by_id, sp_reference.c.target_type == value.target_type)
    if value.url is None:
        assert by_id is not None
        return by_id
    by_url = sp_reference.c.target_url == value.url
    return or_(by_url, by_id) if by_id is not None else by_url


# --------------------------------------------------------------------------- sorting / paging


@dataclass(frozen=True, slots=True)
class _SortColumn:
    expression: ColumnElement[Any]
    descending: bool
    kind: ColumnKind


_SORT_VALUE_KIND: dict[str, tuple[ColumnKind, CursorValue]] = {
    "string": ("str", ""),
    "token": ("str", ""),
    "reference": ("str", ""),
    "uri": ("str", ""),
    "date": ("int", 0),
    "number": ("float", 0.0),
    "quantity": ("float", 0.0),
}


def _sort_value(resource_type: str, key: SortKey, sqlite: bool) -> ColumnElement[Any]:
    """The lowest (ascending) or highest (descending) indexed value of a parameter
    (search.html §3.1.1.5.1), as a subquery correlated on ``resource_pk``."""
    kind = _table_kind(key.param_type)
    table = INDEX_TABLES[kind]
    column: ColumnElement[Any]
    if key.param_type == "string":
        column = table.c.value_norm
    elif key.param_type == "token":
        column = table.c.code
    elif key.param_type == "date":
        column = table.c.high if key.descending else table.c.low
    elif key.param_type == "reference":
        column = func.coalesce(
            sp_reference.c.target_type + "/" + sp_reference.c.target_id, sp_reference.c.target_url
        )
    else:
        column = table.c.value
    aggregate = func.max(column) if key.descending else func.min(column)
    rows = _param_rows_of_resource(kind, resource_type, key.code, sqlite)
    return (
        rows.with_only_columns(aggregate)
        .where(table.c.resource_pk == resource.c.pk)
        .scalar_subquery()
    )


def _sort_columns(
    request: SearchRequest, source: Any, key_values: dict[int, ColumnElement[Any]]
) -> list[_SortColumn]:
    """The ORDER BY columns over ``source`` (``resource`` or a derived table with its pk,
    res_id and last_updated); ``key_values`` holds the value of each parameter sort key.

    A missing value sorts last in either direction through a leading "has no value" flag;
    ``pk`` breaks ties (search.html §3.1.1.5.1).
    """
    columns: list[_SortColumn] = []
    for index, key in enumerate(request.sort):
        if key.code == "_id":
            columns.append(_SortColumn(source.res_id, key.descending, "str"))
        elif key.code == "_lastUpdated":
            columns.append(_SortColumn(source.last_updated, key.descending, "int"))
        else:
            value = key_values[index]
            kind, neutral = _SORT_VALUE_KIND[key.param_type]
            columns.append(_SortColumn(case((value.is_(None), 1), else_=0), False, "int"))
            columns.append(
                _SortColumn(func.coalesce(value, literal(neutral)), key.descending, kind)
            )
    tie_descending = request.sort[-1].descending if request.sort else False
    columns.append(_SortColumn(source.pk, tie_descending, "int"))
    return columns


@lru_cache(maxsize=256)
def _plain_page(sort: tuple[SortKey, ...], backward: bool) -> tuple[Select[Any], list[_SortColumn]]:
    """The ordered row query for sorts on ``_id``/``_lastUpdated``/insertion order only."""
    columns = _sort_columns(SearchRequest("", sort=sort), resource.c, {})
    labels = [c.expression.label(f"sort_{i}") for i, c in enumerate(columns)]
    order = [
        label.desc() if column.descending != backward else label.asc()
        for label, column in zip(labels, columns, strict=True)
    ]
    statement = select(*_ROW_COLUMNS, *labels).order_by(*order)
    return statement, columns


def _sort_kinds(request: SearchRequest) -> list[ColumnKind]:
    """The value kinds of the sort columns of ``_sort_columns``, for cursor validation."""
    kinds: list[ColumnKind] = []
    for key in request.sort:
        if key.code == "_id":
            kinds.append("str")
        elif key.code == "_lastUpdated":
            kinds.append("int")
        else:
            kinds.extend(("int", _SORT_VALUE_KIND[key.param_type][0]))
    kinds.append("int")
    return kinds


def _keyset(columns: Sequence[_SortColumn], cursor: Cursor) -> ColumnElement[bool]:
    """Rows strictly after (or, for a backward cursor, before) the cursor position, whose
    values are bound parameters."""
    descending = [c.descending != cursor.backward for c in columns]
    expressions = [c.expression for c in columns]
    values = list(cursor.position)
    if len(set(descending)) == 1:
        left: Any = expressions[0] if len(columns) == 1 else tuple_(*expressions)
        right: Any = values[0] if len(columns) == 1 else tuple_(*values)
        if descending[0]:
            return left <= right if cursor.inclusive else left < right  # type: ignore[no-any-return]
        return left >= right if cursor.inclusive else left > right  # type: ignore[no-any-return]
    alternatives: list[ColumnElement[bool]] = []
    for index, expression in enumerate(expressions):
        equal_before = [e == v for e, v in zip(expressions[:index], values[:index], strict=True)]
        beyond = expression < values[index] if descending[index] else expression > values[index]
        alternatives.append(and_(*equal_before, beyond))
    if cursor.inclusive:
        alternatives.append(and_(*(e == v for e, v in zip(expressions, values, strict=True))))
    return or_(*alternatives)


# --------------------------------------------------------------------------- execution


class _Search:
    def __init__(
        self,
        conn: Connection,
        request: SearchRequest,
        visibility: Visibility | None,
        *,
        compiled: bool = True,
    ) -> None:
        self.conn = conn
        self.request = request
        self.visibility = visibility
        self.builder = _ConditionBuilder(conn.dialect.name, _now_micros(), visibility)
        self._match_conditions: dict[bool, list[ColumnElement[bool]]] = {}
        self._positive_sizes: list[int] | None = None
        self._visibility_key = visibility.key if isinstance(visibility, KeyedVisibility) else None
        self._shape = self._compiled_shape() if compiled else None

    @property
    def extra_where(self) -> tuple[ColumnElement[bool], ...]:
        """The access policy's condition on the matches, if any."""
        if self.visibility is None:
            return ()
        return (self.visibility(resource, self.request.resource_type),)

    # -- statements compiled per search shape

    def _compiled_shape(self) -> Shape | None:
        """The request's shape when its statements can be compiled once for every search
        of that shape: its values can be lifted (``gateway.search.shapes``) and the
        access policy's condition, if any, is keyed."""
        if self.visibility is not None and self._visibility_key is None:
            return None
        return shape_of(self.request)

    def _fetch_rows(
        self,
        use: str,
        build: Callable[[_Search], Select[Any]],
        *,
        planned: bool = True,
        values: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """The rows of the statement that ``build`` makes for this search: run from the
        text compiled for the search's shape, ``use`` and (when ``planned``) the way in
        that SQLite's counting chose, with this search's values (and ``values``, those of
        parameters ``build`` binds itself) bound; built and run through SQLAlchemy Core
        when the search has no compiled shape."""
        shape = self._shape
        if shape is None:
            return list(self.conn.execute(build(self)))
        plan = self._plan() if planned else None
        key = (use, self.conn.dialect.name, shape.key, self._visibility_key, plan)
        compiled = _COMPILED_SEARCHES.get(key)
        if compiled is None:
            template = _Search(self.conn, shape.template(), self.visibility, compiled=False)
            # The template takes the way in chosen for this search's own values.
            template._positive_sizes = self._positive_sizes
            compiled = _CompiledSearch.of(build(template), self.conn.dialect, self.visibility)
            if len(_COMPILED_SEARCHES) >= _COMPILED_SEARCH_LIMIT:
                _COMPILED_SEARCHES.clear()
            _COMPILED_SEARCHES[key] = compiled
        arguments = compiled.arguments(shape.values, values or {})
        return RawExecutor.of(self.conn).fetchall_sql(compiled.sql, arguments)

    def match_conditions(self, *, counting: bool = False) -> list[ColumnElement[bool]]:
        """The conditions of the matches (without paging), built once per search and use."""
        if counting not in self._match_conditions:
            criteria, driven = self._criteria_conditions(counting=counting)
            request = self.request
            # The type index is the way in only for queries that it orders or narrows.
            wants_type_index = not driven and (
                any(
                    c.param.code in ("_id", "_lastUpdated") or c.has_source
                    for c in request.criteria
                )
                or bool(request.sort and request.sort[0].code in ("_id", "_lastUpdated"))
            )
            self._match_conditions[counting] = [
                self.builder.type_filter(
                    resource, request.resource_type, indexable=wants_type_index
                ),
                _NOT_DELETED,
                *criteria,
                *self.extra_where,
            ]
        return list(self._match_conditions[counting])

    def _criteria_conditions(self, *, counting: bool) -> tuple[list[ColumnElement[bool]], bool]:
        """The conditions of the criteria, and whether one of them drives the query as
        ``pk IN (…)``.

        Each criterion that only needs index rows to exist becomes ``pk IN (…)``. SQLite
        materializes every such list, so the lists are first counted (up to
        ``_DRIVER_LIMIT``): the smallest drives the query and the others become ``EXISTS``
        checks of each candidate. When every list is long, a page is found sooner by walking
        ``resource`` in order with ``EXISTS`` checks only, while a count still does best
        driven by one list. A lone lookup by identifier or reference skips the counting.
        PostgreSQL's planner makes these choices itself from its statistics.
        """
        builder = self.builder
        conditions: list[ColumnElement[bool]] = []
        positives: list[tuple[Criterion, Select[Any]]] = []
        for criterion in self.request.criteria:
            pks = builder.matching_pks(criterion)
            if pks is None:
                conditions.append(builder.condition(criterion, resource))
            else:
                positives.append((criterion, pks))
        plan = self._plan()
        if plan is None:
            conditions.extend(resource.c.pk.in_(pks) for _, pks in positives)
            return conditions, bool(positives)
        driver, small = plan
        driven = counting or small
        for index, (criterion, pks) in enumerate(positives):
            if index == driver and driven:
                conditions.append(resource.c.pk.in_(pks))
            else:
                correlated = builder.matching_pks(criterion, correlated_to=resource)
                assert correlated is not None
                conditions.append(exists(correlated))
        return conditions, driven

    def _plan(self) -> tuple[int, bool] | None:
        """On SQLite, the way in chosen by counting index rows (``_criteria_conditions``):
        the position among the positive criteria of the one with the fewest rows, and
        whether it has few enough to drive a page; None when nothing is counted."""
        criteria = self.request.criteria
        positives = [index for index, criterion in enumerate(criteria) if _is_positive(criterion)]
        if (
            not self.builder.sqlite
            or not positives
            or (len(positives) == 1 and _is_lookup(criteria[positives[0]]))
        ):
            return None
        if self._positive_sizes is None:
            self._positive_sizes = [self._capped_size(index) for index in positives]
        sizes = self._positive_sizes
        driver = min(range(len(sizes)), key=sizes.__getitem__)
        return driver, sizes[driver] <= _DRIVER_LIMIT

    def _capped_size(self, index: int) -> int:
        """The number of index rows of the ``index``-th criterion, counted up to
        ``_DRIVER_LIMIT + 1``."""

        def build(search: _Search) -> Select[Any]:
            pks = search.builder.matching_pks(search.request.criteria[index])
            assert pks is not None
            capped = pks.limit(_DRIVER_LIMIT + 1).subquery()
            return select(func.count()).select_from(capped)

        ((size,),) = self._fetch_rows(f"size:{index}:{_DRIVER_LIMIT}", build, planned=False)
        return int(size)

    def count(self) -> int:
        """The number of matches."""
        ((total,),) = self._fetch_rows("count", _Search.count_statement)
        return int(total)

    def count_statement(self) -> Select[Any]:
        """``SELECT count(…)`` of the matches; from the index alone when one criterion
        decides them."""
        criteria = self.request.criteria
        if len(criteria) == 1 and self.visibility is None:
            pks = self.builder.matching_pks(criteria[0])
            if pks is not None:
                matched = pks.subquery()
                column = next(iter(matched.c))
                return select(func.count(column.distinct()))
        conditions = self.match_conditions(counting=True)
        return select(func.count()).select_from(resource).where(*conditions)

    def page_statement(self, cursor: Cursor | None) -> Select[Any]:
        """The query of one page: up to ``count + 1`` rows in sort order beyond the cursor,
        each row's columns followed by its sort columns (its cursor position)."""
        request = self.request
        backward = cursor is not None and cursor.backward
        limit = request.count + 1
        key_values = {
            index: _sort_value(request.resource_type, key, self.builder.sqlite)
            for index, key in enumerate(request.sort)
            if key.code not in ("_id", "_lastUpdated")
        }

        def ordered(columns: list[_SortColumn]) -> tuple[list[Any], list[Any]]:
            labels = [c.expression.label(f"sort_{i}") for i, c in enumerate(columns)]
            order = [
                label.desc() if column.descending != backward else label.asc()
                for label, column in zip(labels, columns, strict=True)
            ]
            return labels, order

        conditions = self.match_conditions()
        if not key_values:
            base, columns = _plain_page(request.sort, backward)
            if cursor is not None:
                conditions.append(_keyset(columns, cursor))
            return base.where(*conditions).limit(limit)

        # Sorting on parameter values: each value is computed once per match in a derived
        # table that the planners do not merge into the outer query (OFFSET 0); only the
        # rows of the page are then joined back to ``resource``.
        matched = (
            select(
                resource.c.pk,
                resource.c.res_id,
                resource.c.last_updated,
                *(value.label(f"key_{index}") for index, value in key_values.items()),
            )
            .where(*conditions)
            .offset(0)
            .subquery("matched")
        )
        columns = _sort_columns(
            request, matched.c, {index: matched.c[f"key_{index}"] for index in key_values}
        )
        labels, order = ordered(columns)
        page = (
            select(matched.c.pk.label("page_pk"), *labels)
            .where(*([_keyset(columns, cursor)] if cursor is not None else []))
            .order_by(*order)
            .limit(limit)
            .subquery("page")
        )
        names = [label.name for label in labels]
        outer_order = [
            page.c[name].desc() if column.descending != backward else page.c[name].asc()
            for name, column in zip(names, columns, strict=True)
        ]
        statement = (
            select(*_ROW_COLUMNS, *(page.c[name] for name in names))
            .join_from(page, resource, resource.c.pk == page.c.page_pk)
            .order_by(*outer_order)
        )
        return statement

    def page(self) -> SearchPage:
        request = self.request
        only_total = request.summary == "count" or request.count == 0
        if only_total:
            return SearchPage([], [], self.count(), None, None)
        signature = request.sort_signature()
        cursor: Cursor | None = None
        if request.cursor is not None:
            cursor = decode_cursor(
                request.cursor, sort_signature=signature, kinds=_sort_kinds(request)
            )
        backward = cursor is not None and cursor.backward
        if cursor is None:
            fetched = self._fetch_rows("page", lambda search: search.page_statement(None))
        else:
            bound, at = bound_cursor(cursor)
            side = ("backward" if cursor.backward else "forward") + (
                " inclusive" if cursor.inclusive else ""
            )
            fetched = self._fetch_rows(
                f"page {side}", lambda search: search.page_statement(bound), values=at
            )
        has_more = len(fetched) > request.count
        rows = fetched[: request.count]
        if backward:
            rows.reverse()

        def position(row: Any) -> tuple[CursorValue, ...]:
            return tuple(row[len(_ROW_COLUMNS) :])

        def make(position_: tuple[CursorValue, ...], *, back: bool, inclusive: bool = False) -> str:
            return encode_cursor(Cursor(position_, back, inclusive, signature))

        next_cursor: str | None = None
        previous_cursor: str | None = None
        if backward:
            assert cursor is not None
            if has_more:
                previous_cursor = make(position(rows[0]), back=True)
            next_cursor = (
                make(position(rows[-1]), back=False)
                if rows
                else make(cursor.position, back=False, inclusive=True)
            )
        else:
            if has_more:
                next_cursor = make(position(rows[-1]), back=False)
            if cursor is not None:
                previous_cursor = (
                    make(position(rows[0]), back=True)
                    if rows
                    else make(cursor.position, back=True, inclusive=True)
                )

        matches = [_stored_row(r) for r in rows]
        total: int | None = None
        if request.total != "none":
            total = len(matches) if cursor is None and not has_more else self.count()
        included = self.included(matches)
        return SearchPage(matches, included, total, next_cursor, previous_cursor)

    # -- _include / _revinclude (search.html §3.1.1.5.4)

    def included(self, matches: list[StoredRow]) -> list[StoredRow]:
        request = self.request
        if not (request.includes or request.revincludes) or not matches:
            return []
        seen = {row.pk for row in matches}
        found: list[StoredRow] = []
        sources = matches
        for iterating in (False, True):
            includes = [i for i in request.includes if i.iterate or not iterating]
            revincludes = [i for i in request.revincludes if i.iterate or not iterating]
            fresh: list[StoredRow] = []
            candidates = [
                *(row for i in includes for row in self._forward(i, sources)),
                *(row for i in revincludes for row in self._reverse(i, sources)),
            ]
            for row in candidates:
                if row.pk not in seen:
                    seen.add(row.pk)
                    fresh.append(row)
            found.extend(fresh)
            sources = fresh
            if not sources:
                break
        return found

    def _fetch(self, *conditions: ColumnElement[bool]) -> list[StoredRow]:
        statement = (
            select(*_ROW_COLUMNS)
            .where(
                _NOT_DELETED,
                *conditions,
                *(() if self.visibility is None else (self.visibility(resource, None),)),
            )
            .order_by(resource.c.pk)
        )
        return [_stored_row(r) for r in self.conn.execute(statement)]

    def _forward(self, include: Include, sources: Iterable[StoredRow]) -> list[StoredRow]:
        source_pks = [row.pk for row in sources if row.res_type == include.source_type]
        if not source_pks:
            return []
        target = resource.alias()
        link = [
            sp_reference.c.resource_pk.in_(source_pks),
            self.builder.key_filter(sp_reference.c.res_type, include.source_type, indexable=False),
        ]
        if include.param_code != "*":
            link.append(sp_reference.c.param == include.param_code)
        if include.target_type is not None:
            link.append(sp_reference.c.target_type == include.target_type)
        targets = (
            select(target.c.pk)
            .join_from(
                sp_reference,
                target,
                and_(
                    target.c.res_type == sp_reference.c.target_type,
                    target.c.res_id == sp_reference.c.target_id,
                ),
            )
            .where(*link)
        )
        return self._fetch(resource.c.pk.in_(targets))

    def _reverse(self, include: Include, sources: Iterable[StoredRow]) -> list[StoredRow]:
        ids_by_type: dict[str, list[str]] = {}
        for row in sources:
            if include.target_type is None or row.res_type == include.target_type:
                ids_by_type.setdefault(row.res_type, []).append(row.res_id)
        if not ids_by_type:
            return []
        link = [sp_reference.c.res_type == include.source_type]
        if include.param_code != "*":
            link.append(sp_reference.c.param == include.param_code)
        link.append(
            or_(
                *(
                    and_(sp_reference.c.target_type == t, sp_reference.c.target_id.in_(ids))
                    for t, ids in ids_by_type.items()
                )
            )
        )
        referencing = select(sp_reference.c.resource_pk).where(*link)
        return self._fetch(
            self.builder.type_filter(resource, include.source_type, indexable=False),
            resource.c.pk.in_(referencing),
        )


def execute_search(
    conn: Connection,
    request: SearchRequest,
    *,
    visibility: Visibility | None = None,
) -> SearchPage:
    """Runs a parsed search and returns one page (search.html §3.1.1).

    ``visibility`` is the access policy's condition on a ``resource`` row; it applies to
    the matches, the totals, the chained and ``_has`` resources and the included ones.
    """
    return _Search(conn, request, visibility).page()


def find_matches(
    conn: Connection,
    resource_type: str,
    query: Sequence[tuple[str, str]],
    *,
    limit: int = 2,
    visibility: Visibility | None = None,
) -> list[StoredRow]:
    """Up to ``limit`` current resources matching the criteria of a conditional
    create/update/delete or conditional reference (http.html §3.1.0.8, search.html).

    The criteria are parsed strictly; a query without any criterion is rejected.
    """
    request, _ = parse_search(
        resource_type, list(query), strict=True, default_count=limit, max_count=limit
    )
    if not request.criteria:
        raise InvalidSearch(f"A conditional {resource_type} query needs at least one criterion")
    search = _Search(conn, request, visibility)
    rows = search._fetch_rows(
        f"matches:{limit}",
        lambda s: (
            select(*_ROW_COLUMNS).where(*s.match_conditions()).order_by(resource.c.pk).limit(limit)
        ),
    )
    return [_stored_row(r) for r in rows]


__all__ = [
    "SearchPage",
    "StoredRow",
    "execute_search",
    "find_matches",
]
