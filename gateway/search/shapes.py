"""Search shapes: a parsed search with its values lifted out as bound parameters.

Two searches that differ only in their values (``identifier=A|1`` and
``identifier=B|2``) have the same SQL. :func:`shape_of` turns a request into its
*shape*: a hashable key naming everything that decides the SQL text (type, parameters,
modifiers, which parts of each value are present, date prefixes, sort, page size) and a
template request whose values are named bound parameters (``slot_0``, ``slot_1``, …),
plus the values themselves. The query builder builds and compiles the template once per
shape (the template is made only then); later searches of that shape run the compiled
text with their own values (see ``gateway.search.query``).

Only values that the builder binds as they are can be lifted: tokens (search.html
§3.1.1.4.9) and ``_id``, references given as ``Type/id``, an id or a URL (§3.1.1.4.10),
dates and ``_lastUpdated`` with any prefix but ``ap`` (§3.1.1.4.3, whose margin depends
on the clock), and strings (§3.1.1.4.7, also token ``:text``) through their operands
(normalized form, upper bound, LIKE patterns), which are computed here from the value.
Numbers, URIs, other modifiers, chains and ``_has`` keep being built per request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

from sqlalchemy import bindparam
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import NullType

from gateway.search.cursor import Cursor
from gateway.search.params import (
    Criterion,
    DateValue,
    MissingValue,
    ReferenceValue,
    SearchRequest,
    SearchValue,
    StringValue,
    TokenValue,
)
from gateway.search.values import StringOperands, string_operands

SLOT_PREFIX = "slot_"
"""Names of the bound parameters that carry a search's values."""

# Modifiers that only change how a string is compared (search.html §3.1.1.4.7, token
# ``:text`` §3.1.1.4.9); every other one changes the form of the SQL.
_LIFTED_MODIFIERS = (None, "exact", "contains", "text")

_Item = TypeVar("_Item")
_Lifted = TypeVar("_Lifted")


@dataclass(frozen=True, slots=True)
class Shape:
    """A search's shape (``key``) and its values by slot name; ``template()`` is the
    request with those values as bound parameters, needed only to compile the shape."""

    key: Hashable
    values: dict[str, Any]
    request: SearchRequest

    def template(self) -> SearchRequest:
        """The request with each value a named bound parameter, in slot order."""
        slots = _Slots(bind=True)
        lifted = _lift_each(self.request.criteria, _lift_criterion, slots)
        assert lifted is not None
        request = self.request
        return SearchRequest(
            request.resource_type, criteria=lifted[1], sort=request.sort, count=request.count
        )


class _Slots:
    """Names the values of a search in order of appearance; with ``bind``, hands each
    out as a bound parameter of that name (otherwise as it is)."""

    def __init__(self, *, bind: bool, prefix: str = SLOT_PREFIX) -> None:
        self.bind = bind
        self.prefix = prefix
        self.values: dict[str, Any] = {}

    def lift(self, value: Any) -> Any:
        """``value`` in its slot (None stays None: it is part of the shape)."""
        if value is None:
            return None
        name = f"{self.prefix}{len(self.values)}"
        self.values[name] = value
        if not self.bind:
            return value
        # Untyped, so that each comparison binds it as its column's type (a date's bounds
        # are BIGINT on PostgreSQL, not the INTEGER a Python int would suggest).
        parameter: BindParameter[Any] = bindparam(name, value, type_=NullType())
        # The template's values stand where the builder expects plain Python values.
        return cast(Any, parameter)


def bound_cursor(cursor: Cursor) -> tuple[Cursor, dict[str, Any]]:
    """A cursor whose position values are bound parameters (``cursor_0``, …), and those
    values by name: a page beyond a cursor is compiled like the search's own values."""
    slots = _Slots(bind=True, prefix="cursor_")
    position = tuple(slots.lift(value) for value in cursor.position)
    return replace(cursor, position=position), slots.values


def _lift_value(value: SearchValue | MissingValue, slots: _Slots) -> tuple[Any, Any] | None:
    """The value's shape and its template, or None when it cannot be lifted."""
    if isinstance(value, TokenValue):
        shape = ("token", value.system is None, value.code is None, value.match_system)
        return shape, TokenValue(
            slots.lift(value.system), slots.lift(value.code), value.match_system
        )
    if isinstance(value, ReferenceValue):
        shape = (
            "reference",
            value.target_type is None,
            value.target_id is None,
            value.url is None,
        )
        reference = ReferenceValue(
            slots.lift(value.target_type), slots.lift(value.target_id), slots.lift(value.url)
        )
        return shape, reference
    if isinstance(value, StringValue):
        operands = string_operands(value.text)
        template = StringOperands(
            slots.lift(operands.text),
            slots.lift(operands.normalized),
            slots.lift(operands.upper),
            slots.lift(operands.starts_like),
            slots.lift(operands.contains_like),
            operands.empty,
            operands.bounded,
        )
        return ("string", operands.empty, operands.bounded), template
    if isinstance(value, DateValue) and value.prefix != "ap":
        return ("date", value.prefix), DateValue(
            value.prefix, slots.lift(value.low), slots.lift(value.high)
        )
    return None


def _lift_criterion(criterion: Criterion, slots: _Slots) -> tuple[Any, Criterion] | None:
    param = criterion.param
    if (
        criterion.modifier not in _LIFTED_MODIFIERS
        or criterion.chained
        or criterion.has_source is not None
        or not criterion.values
    ):
        return None
    lifted = _lift_each(criterion.values, _lift_value, slots)
    if lifted is None:
        return None
    shapes, values = lifted
    shape = (criterion.resource_type, param.code, param.type, criterion.modifier, shapes)
    return shape, replace(criterion, raw_value="", values=values) if slots.bind else criterion


def _lift_each(
    items: Iterable[_Item],
    lift: Callable[[_Item, _Slots], tuple[Any, _Lifted] | None],
    slots: _Slots,
) -> tuple[tuple[Any, ...], tuple[_Lifted, ...]] | None:
    """The shapes and templates of ``items``; None if one of them cannot be lifted."""
    shapes: list[Any] = []
    templates: list[_Lifted] = []
    for item in items:
        lifted = lift(item, slots)
        if lifted is None:
            return None
        shapes.append(lifted[0])
        templates.append(lifted[1])
    return tuple(shapes), tuple(templates)


def shape_of(request: SearchRequest) -> Shape | None:
    """The shape of a search's criteria, sort and page size; None when a criterion has a
    value that cannot be lifted (see the module docstring). Includes, ``_summary``,
    ``_elements``, ``_total`` and the cursor are not part of the shape: the caller
    decides which of them a compiled statement may serve."""
    slots = _Slots(bind=False)
    lifted = _lift_each(request.criteria, _lift_criterion, slots)
    if lifted is None:
        return None
    key = (request.resource_type, lifted[0], request.sort, request.count)
    return Shape(key, slots.values, request)


__all__ = ["SLOT_PREFIX", "Shape", "bound_cursor", "shape_of"]
