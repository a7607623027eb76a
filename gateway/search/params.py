"""Parsing of FHIR R4 search requests (search.html).

``parse_search`` turns the decoded query pairs of a type-level search into a
``SearchRequest``: the criteria (an AND list of OR lists, §3.1.1.1), the result parameters
(§3.1.1.5) and the paging cursor. Values are unescaped per §3.1.1.3 and typed per parameter
type (§3.1.1.4.x), so every malformed value is reported here, before any query runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.errors import InvalidSearch, Issue
from gateway.fhir.resource_types import all_fhir_type_names, is_stored_type
from gateway.search.registry import CONTROL_PARAMETERS, SearchParam, params_for
from gateway.search.values import date_range, number_range

PREFIXES: frozenset[str] = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
SUMMARY_MODES: frozenset[str] = frozenset({"true", "text", "data", "count", "false"})
TOTAL_MODES: frozenset[str] = frozenset({"none", "estimate", "accurate"})
SORTABLE_TYPES: frozenset[str] = frozenset(
    {"string", "token", "date", "number", "quantity", "reference", "uri"}
)
# Parameter types the index can answer (search.html §3.1.1.4); composite and special cannot.
SEARCHABLE_TYPES: frozenset[str] = SORTABLE_TYPES
MAX_CHAIN_DEPTH = 3

_MODIFIERS_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset({"missing", "exact", "contains"}),
    "token": frozenset({"missing", "not", "text"}),
    "reference": frozenset({"missing"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"missing", "below", "above"}),
}
_RESULT_PARAMETERS_IN_LINKS = ("_format", "_pretty")
_INCLUDE_MODIFIERS = frozenset({"", "iterate", "recurse"})
_UNSUPPORTED_SPECIAL = frozenset({"_text", "_content", "_list", "_query", "_filter", "_type"})
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ELEMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_ABSOLUTE_TAIL = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
# A '+' of a time-zone offset arrives as a space when the client did not percent-encode it.
_UNENCODED_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$")
_ESCAPABLE = frozenset(",|$\\")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``code``, ``system|code``, ``|code`` or ``system|`` (search.html §3.1.1.4.9).

    ``match_system`` is False for a bare code (any system); with it set, ``system`` None
    means "no system".
    """

    system: str | None
    code: str | None
    match_system: bool


@dataclass(frozen=True, slots=True)
class StringValue:
    """A string, or the text of a token ``:text`` search (search.html §3.1.1.4.7)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """``Type/id``, a bare id, or an absolute URL / canonical (search.html §3.1.1.4.10)."""

    target_type: str | None
    target_id: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class DateValue:
    """A prefixed date and its implicit range ``[low, high)`` in epoch micros (§3.1.1.4.3)."""

    prefix: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class NumberValue:
    """A prefixed number or quantity (search.html §3.1.1.4.1, §3.1.1.4.11)."""

    prefix: str
    value: float
    low: float
    high: float
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    """A URI, compared exactly or by ``:below`` / ``:above`` (search.html §3.1.1.4.12)."""

    uri: str


@dataclass(frozen=True, slots=True)
class MissingValue:
    """``:missing=true|false`` (search.html §3.1.1.4 modifiers)."""

    missing: bool


SearchValue = TokenValue | StringValue | ReferenceValue | DateValue | NumberValue | UriValue


# --------------------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class Criterion:
    """One parameter occurrence: its values are ORed, the criteria of a request ANDed.

    ``param`` applies to ``resource_type``. For a chained reference (§3.1.1.4.13)
    ``chained`` holds one criterion per candidate target type; for a reverse chain
    (``_has``, §3.1.1.4.14) ``param`` is the referencing parameter of ``has_source`` and
    ``chained`` holds the single criterion on that source type.
    """

    resource_type: str
    name: str
    raw_value: str
    param: SearchParam
    modifier: str | None = None
    values: tuple[SearchValue | MissingValue, ...] = ()
    chained: tuple[Criterion, ...] = ()
    has_source: str | None = None


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key (search.html §3.1.1.5.1)."""

    code: str
    descending: bool
    param_type: str


@dataclass(frozen=True, slots=True)
class Include:
    """One ``_include`` / ``_revinclude`` (search.html §3.1.1.5.4).

    ``param_code`` is ``*`` for every reference parameter of ``source_type``.
    """

    source_type: str
    param_code: str
    target_type: str | None = None
    iterate: bool = False

    def text(self) -> str:
        base = f"{self.source_type}:{self.param_code}"
        return f"{base}:{self.target_type}" if self.target_type else base


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A parsed type-level search."""

    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    cursor: str | None = None
    passthrough: tuple[tuple[str, str], ...] = field(default=())

    def sort_signature(self) -> str:
        return ",".join(("-" if key.descending else "") + key.code for key in self.sort)

    def canonical_query(self) -> list[tuple[str, str]]:
        """The parameters as understood, without ``_cursor`` (for self/next/previous links)."""
        query = [(c.name, c.raw_value) for c in self.criteria]
        if self.sort:
            query.append(("_sort", self.sort_signature()))
        query.append(("_count", str(self.count)))
        query.extend(
            ("_include:iterate" if i.iterate else "_include", i.text()) for i in self.includes
        )
        query.extend(
            ("_revinclude:iterate" if i.iterate else "_revinclude", i.text())
            for i in self.revincludes
        )
        if self.summary is not None:
            query.append(("_summary", self.summary))
        if self.elements:
            query.append(("_elements", ",".join(self.elements)))
        if self.total is not None:
            query.append(("_total", self.total))
        query.extend(self.passthrough)
        return query


# --------------------------------------------------------------------------- escaping


def split_unescaped(text: str, separator: str, maxsplit: int = -1) -> list[str]:
    """Splits on ``separator`` where it is not escaped by a backslash (search.html §3.1.1.3)."""
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == separator and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """Removes the escaping backslash of ``\\,`` ``\\|`` ``\\$`` and ``\\\\``."""
    if "\\" not in text:
        return text
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _ESCAPABLE:
            out.append(text[index + 1])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


# --------------------------------------------------------------------------- parser


class _Unsupported(Exception):
    """A parameter or modifier that this server does not know or support."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


def _bad_value(name: str, reason: str) -> InvalidSearch:
    return InvalidSearch(f"Invalid value for search parameter '{name}': {reason}", (name,))


def _split_prefix(text: str) -> tuple[str, str]:
    head = text[:2]
    if head.isalpha() and len(text) > 2 and not text[2].isalpha():
        if head not in PREFIXES:
            raise ValueError(f"unknown prefix '{head}'")
        return head, text[2:]
    return "eq", text


def _parse_date(name: str, text: str) -> DateValue:
    try:
        prefix, rest = _split_prefix(text.strip())
        rest = _UNENCODED_OFFSET.sub(r"\1+\2", rest)
        low, high = date_range(rest)
    except ValueError as exc:
        raise _bad_value(name, str(exc)) from exc
    return DateValue(prefix, low, high)


def _parse_number(name: str, text: str, *, quantity: bool) -> NumberValue:
    parts = [unescape(p) for p in split_unescaped(text, "|", 2)] if quantity else [text]
    if len(parts) == 2:
        raise _bad_value(name, "a quantity is number|system|code")
    try:
        prefix, rest = _split_prefix(parts[0].strip())
        value, low, high = number_range(rest)
    except ValueError as exc:
        raise _bad_value(name, str(exc)) from exc
    system = (parts[1] or None) if len(parts) == 3 else None
    code = (parts[2] or None) if len(parts) == 3 else None
    return NumberValue(prefix, value, low, high, system, code)


def _parse_token(name: str, text: str) -> TokenValue:
    parts = split_unescaped(text, "|", 1)
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0]), match_system=False)
    system, code = unescape(parts[0]) or None, unescape(parts[1]) or None
    if system is None and code is None:
        raise _bad_value(name, "a token needs a code or a system")
    return TokenValue(system, code, match_system=True)


def _parse_reference(
    param: SearchParam, name: str, text: str, type_modifier: str | None
) -> ReferenceValue:
    value = unescape(text).strip()
    if "://" in value or value.startswith("urn:"):
        # A canonical's "|version" is not indexed: the URL alone is compared.
        url = value.split("|", 1)[0]
        tail = _ABSOLUTE_TAIL.search(url)
        if tail and tail.group(1) in all_fhir_type_names():
            if type_modifier and tail.group(1) != type_modifier:
                raise _bad_value(name, f"'{value}' is not a {type_modifier} reference")
            return ReferenceValue(tail.group(1), tail.group(2), url)
        return ReferenceValue(None, None, url)
    parts = value.split("/")
    target_type: str | None
    if len(parts) in (2, 4) and (len(parts) == 2 or parts[2] == "_history"):
        target_type, target_id = parts[0], parts[1]
        if target_type not in all_fhir_type_names():
            raise _bad_value(name, f"'{target_type}' is not a resource type")
        if type_modifier and target_type != type_modifier:
            raise _bad_value(name, f"'{value}' is not a {type_modifier} reference")
    elif len(parts) == 1:
        target_id = value
        target_type = type_modifier or (param.targets[0] if len(param.targets) == 1 else None)
    else:
        raise _bad_value(name, f"'{value}' is not a reference")
    if not _FHIR_ID.match(target_id):
        raise _bad_value(name, f"'{target_id}' is not a resource id")
    return ReferenceValue(target_type, target_id, None)


def _parse_missing(name: str, text: str) -> MissingValue:
    if text not in ("true", "false"):
        raise _bad_value(name, ":missing takes true or false")
    return MissingValue(text == "true")


def _value_parser(
    param: SearchParam, name: str, modifier: str | None
) -> Callable[[str], SearchValue | MissingValue]:
    if modifier == "missing":
        return lambda text: _parse_missing(name, unescape(text))
    kind = param.type
    if param.code == "_id":
        return lambda text: TokenValue(None, unescape(text), match_system=False)
    if kind == "token":
        if modifier == "text":
            return lambda text: StringValue(unescape(text))
        return lambda text: _parse_token(name, text)
    if kind == "string":
        return lambda text: StringValue(unescape(text))
    if kind == "reference":
        return lambda text: _parse_reference(param, name, text, modifier)
    if kind == "date":
        return lambda text: _parse_date(name, text)
    if kind in ("number", "quantity"):
        return lambda text: _parse_number(name, text, quantity=kind == "quantity")
    return lambda text: UriValue(unescape(text))


def _check_modifier(param: SearchParam, name: str, modifier: str | None) -> None:
    if modifier is None:
        return
    if param.code == "_id":
        allowed: frozenset[str] = frozenset({"not", "missing"})
    elif param.code == "_lastUpdated":
        allowed = frozenset({"missing"})
    else:
        allowed = _MODIFIERS_BY_TYPE.get(param.type, frozenset())
    if modifier in allowed:
        return
    if param.type == "reference" and modifier in all_fhir_type_names():
        if param.targets and modifier not in param.targets:
            raise InvalidSearch(
                f"Search parameter '{name}': {modifier} is not a target type of "
                f"{param.resource_type}.{param.code}",
                (name,),
            )
        return
    raise _Unsupported(name, f"modifier ':{modifier}' is not supported on '{param.code}'")


class _Parser:
    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.issues: list[Issue] = []

    def unsupported(self, name: str, reason: str) -> None:
        message = f"Search parameter '{name}' ignored: {reason}"
        if self.strict:
            raise InvalidSearch(message, (name,))
        self.issues.append(Issue("warning", "not-supported", message, (name,)))

    def criterion(
        self, resource_type: str, name: str, raw_value: str, depth: int = 0
    ) -> Criterion | None:
        """Parses ``name=raw_value``; None for an empty value (nothing to match)."""
        if name.startswith("_has:"):
            return self._reverse_chain(resource_type, name, raw_value, depth)
        head, dot, rest = name.partition(".")
        code, colon, modifier = head.partition(":")
        param = params_for(resource_type).get(code)
        if param is None or param.type not in SEARCHABLE_TYPES:
            reason = "unknown" if param is None else f"type {param.type} is not supported"
            raise _Unsupported(name, f"{reason} for {resource_type}")
        if colon and not modifier:
            raise _Unsupported(name, "empty modifier")
        if dot:
            return self._chain(resource_type, name, raw_value, param, modifier or None, rest, depth)
        _check_modifier(param, name, modifier or None)
        parse = _value_parser(param, name, modifier or None)
        values = tuple(parse(part) for part in split_unescaped(raw_value, ",") if part != "")
        if not values:
            return None
        return Criterion(resource_type, name, raw_value, param, modifier or None, values)

    def _chain(
        self,
        resource_type: str,
        name: str,
        raw_value: str,
        param: SearchParam,
        type_modifier: str | None,
        rest: str,
        depth: int,
    ) -> Criterion | None:
        if param.type != "reference":
            raise InvalidSearch(f"'{name}': only reference parameters can be chained", (name,))
        if depth >= MAX_CHAIN_DEPTH:
            raise InvalidSearch(
                f"'{name}': chains are limited to {MAX_CHAIN_DEPTH} levels", (name,)
            )
        if type_modifier is not None:
            _check_modifier(param, name, type_modifier)
            if type_modifier not in all_fhir_type_names():
                raise InvalidSearch(f"'{name}': a chain takes a resource type modifier", (name,))
        candidates = (type_modifier,) if type_modifier else param.targets
        stored = [t for t in candidates if is_stored_type(t)]
        chain_code = rest.partition(":")[0].partition(".")[0]
        if not rest.startswith("_has:"):
            stored = [t for t in stored if chain_code in params_for(t)]
            if not stored and any(is_stored_type(t) for t in candidates):
                raise _Unsupported(name, f"no target of '{param.code}' has a parameter '{rest}'")
        chained: list[Criterion] = []
        for target in stored:
            inner = self._inner(name, target, rest, raw_value, depth)
            if inner is None:
                return None
            chained.append(inner)
        # With no stored target type, nothing can be resolved and the criterion matches nothing.
        return Criterion(resource_type, name, raw_value, param, type_modifier, (), tuple(chained))

    def _reverse_chain(
        self, resource_type: str, name: str, raw_value: str, depth: int
    ) -> Criterion | None:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise InvalidSearch(f"'{name}': _has takes _has:Type:reference:parameter", (name,))
        _, source_type, reference_code, rest = parts
        if depth >= MAX_CHAIN_DEPTH:
            raise InvalidSearch(
                f"'{name}': chains are limited to {MAX_CHAIN_DEPTH} levels", (name,)
            )
        if source_type not in all_fhir_type_names():
            raise InvalidSearch(f"'{name}': '{source_type}' is not a resource type", (name,))
        if not is_stored_type(source_type):
            raise _Unsupported(name, f"{source_type} is not stored by this server")
        param = params_for(source_type).get(reference_code)
        if param is None or param.type != "reference":
            raise InvalidSearch(
                f"'{name}': {source_type} has no reference parameter '{reference_code}'", (name,)
            )
        if param.targets and resource_type not in param.targets:
            raise InvalidSearch(
                f"'{name}': {source_type}.{reference_code} does not refer to {resource_type}",
                (name,),
            )
        inner = self._inner(name, source_type, rest, raw_value, depth)
        if inner is None:
            return None
        return Criterion(resource_type, name, raw_value, param, None, (), (inner,), source_type)

    def _inner(
        self, name: str, resource_type: str, rest: str, raw_value: str, depth: int
    ) -> Criterion | None:
        """The criterion at the end of a chain, with errors naming the whole parameter."""
        try:
            return self.criterion(resource_type, rest, raw_value, depth + 1)
        except _Unsupported as unsupported:
            raise _Unsupported(name, unsupported.reason) from unsupported
        except InvalidSearch as invalid:
            raise InvalidSearch(f"{invalid.diagnostics} (in '{name}')", (name,)) from invalid


def _parse_count(value: str, max_count: int) -> int:
    if not value.isdigit():
        raise InvalidSearch(f"_count must be a non-negative integer, not '{value}'", ("_count",))
    return min(int(value), max_count)


def _parse_sort(resource_type: str, value: str) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in value.split(","):
        item = item.strip()
        descending = item.startswith("-")
        code = item[1:] if descending else item
        if not code:
            raise InvalidSearch(f"_sort has an empty key in '{value}'", ("_sort",))
        if code in ("_id", "_lastUpdated"):
            keys.append(SortKey(code, descending, "token" if code == "_id" else "date"))
            continue
        param = params_for(resource_type).get(code)
        if param is None or param.type not in SORTABLE_TYPES:
            raise InvalidSearch(
                f"_sort: {resource_type} has no sortable parameter '{code}'", ("_sort",)
            )
        keys.append(SortKey(code, descending, param.type))
    return keys


def _parse_include(resource_type: str, name: str, value: str, *, reverse: bool) -> Include:
    iterate = name.endswith((":iterate", ":recurse"))
    if value == "*" and not reverse:
        return Include(resource_type, "*", None, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidSearch(f"{name} takes Type:parameter[:targetType], not '{value}'", (name,))
    source_type, code = parts[0], parts[1]
    target_type = parts[2] if len(parts) == 3 else None
    if not is_stored_type(source_type):
        raise InvalidSearch(f"{name}: '{source_type}' is not a searchable type", (name,))
    if not reverse and not iterate and source_type != resource_type:
        raise InvalidSearch(
            f"{name}={value}: the source type must be {resource_type} (or use :iterate)", (name,)
        )
    if code != "*":
        param = params_for(source_type).get(code)
        if param is None or param.type != "reference":
            raise InvalidSearch(
                f"{name}: {source_type} has no reference parameter '{code}'", (name,)
            )
        if target_type is not None and param.targets and target_type not in param.targets:
            raise InvalidSearch(
                f"{name}: {target_type} is not a target of {source_type}.{code}", (name,)
            )
    if target_type is not None and target_type not in all_fhir_type_names():
        raise InvalidSearch(f"{name}: '{target_type}' is not a resource type", (name,))
    return Include(source_type, code, target_type, iterate)


def _parse_elements(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for element in names:
        if not _ELEMENT_NAME.match(element):
            raise InvalidSearch(f"_elements: '{element}' is not an element name", ("_elements",))
    return names


def _one_of(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        choices = "|".join(sorted(allowed))
        raise InvalidSearch(f"{name} must be one of {choices}, not '{value}'", (name,))
    return value


def parse_search(
    resource_type: str,
    params: Sequence[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
) -> tuple[SearchRequest, list[Issue]]:
    """Parses the query pairs of ``GET [base]/[type]?...`` (search.html §3.1.1).

    Unknown or unsupported parameters and modifiers are ignored with a warning issue, or
    rejected when ``strict`` (``Prefer: handling=strict``, §3.1.1.1). Invalid values are
    always rejected with InvalidSearch.
    """
    parser = _Parser(strict=strict)
    criteria: list[Criterion] = []
    sort: list[SortKey] = []
    includes: list[Include] = []
    revincludes: list[Include] = []
    elements: list[str] = []
    passthrough: list[tuple[str, str]] = []
    count = min(default_count, max_count)
    summary: str | None = None
    total: str | None = None
    cursor: str | None = None

    for name, value in params:
        base = name.partition(":")[0]
        if base in CONTROL_PARAMETERS:
            if value == "":
                continue
            if base == "_count" and name == base:
                count = _parse_count(value, max_count)
            elif base == "_sort" and name == base:
                sort.extend(_parse_sort(resource_type, value))
            elif base == "_include" and name.partition(":")[2] in _INCLUDE_MODIFIERS:
                includes.append(_parse_include(resource_type, name, value, reverse=False))
            elif base == "_revinclude" and name.partition(":")[2] in _INCLUDE_MODIFIERS:
                revincludes.append(_parse_include(resource_type, name, value, reverse=True))
            elif base == "_summary" and name == base:
                summary = _one_of(name, value, SUMMARY_MODES)
            elif base == "_elements" and name == base:
                elements.extend(_parse_elements(value))
            elif base == "_total" and name == base:
                total = _one_of(name, value, TOTAL_MODES)
            elif base == "_cursor" and name == base:
                cursor = value
            elif base in _RESULT_PARAMETERS_IN_LINKS and name == base:
                passthrough.append((name, value))
            elif (base, value) in (("_contained", "false"), ("_containedType", "container")):
                continue
            else:
                parser.unsupported(name, f"'{name}={value}' is not supported")
            continue
        if base in _UNSUPPORTED_SPECIAL:
            parser.unsupported(name, f"{base} is not supported by this server")
            continue
        try:
            criterion = parser.criterion(resource_type, name, value)
        except _Unsupported as unsupported:
            parser.unsupported(unsupported.name, unsupported.reason)
            continue
        if criterion is not None:
            criteria.append(criterion)

    request = SearchRequest(
        resource_type=resource_type,
        criteria=tuple(criteria),
        sort=tuple(sort),
        count=count,
        includes=tuple(includes),
        revincludes=tuple(revincludes),
        summary=summary,
        elements=tuple(elements),
        total=total,
        cursor=cursor,
        passthrough=tuple(passthrough),
    )
    return request, parser.issues
