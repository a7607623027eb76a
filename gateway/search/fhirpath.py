"""Fast evaluation of the FHIRPath used by R4 search-parameter expressions.

SearchParameter.expression (searchparameter.html, search.html §3.1.1) is FHIRPath
(fhirpath.html, N1). The official R4 expressions mostly use a small subset, which is
compiled here into plain Python closures over the JSON form of a resource:

- ``Type.a.b.c`` navigation (fhirpath.html §5.1, collections flattened), including FHIR
  choice elements (``X.occurrence`` matches ``occurrenceDateTime``, ``occurrencePeriod``…,
  fhirpath.html §2.4 / formats.html §1.14.0.1.3);
- ``|`` union with duplicate removal (fhirpath.html §6.5.1), ``(expr)``, ``[n]`` indexer;
- ``expr as T``, ``.as(T)``, ``.ofType(T)`` (fhirpath.html §6.3);
- ``.where(resolve() is T)`` on references and ``.where(field = 'literal')``.

Choice, path and type information comes from fhirpathpy's R4 model. Anything else is
evaluated by fhirpathpy itself, with ``resolve()`` supplied as the reference-type check
used in search parameters (a Reference resolves to the type named in its
``reference``; references.html §2.3.0.2).

Results are the raw JSON values (dicts for complex types, str/int/float/bool for
primitives), as fhirpathpy returns them, with two deliberate differences: primitive
extensions (``_field``) and JSON nulls are never part of a compiled result, and ``as`` is
not an error on a collection of more than one item (it filters like ``ofType``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, NamedTuple

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from gateway.fhir.resource_types import all_fhir_type_names

__all__ = [
    "Evaluator",
    "ParsedReference",
    "UnsupportedExpression",
    "compile_path",
    "fhirpathpy_evaluator",
    "is_compiled",
    "parse_reference",
]

Evaluator = Callable[[dict[str, Any]], list[Any]]
_Step = Callable[[list[Any]], list[Any]]

_MODEL: dict[str, Any] = models["r4"]
_PATH2TYPE: dict[str, str] = _MODEL["path2Type"]
_TYPE2PARENT: dict[str, str] = _MODEL["type2Parent"]
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]
_RESOURCE_BASES = frozenset({"Resource", "DomainResource"})


class UnsupportedExpression(Exception):
    """The expression is outside the compiled subset."""


# --------------------------------------------------------------------------- references


class ParsedReference(NamedTuple):
    """A literal reference ``[base/]Type/id[/_history/vid]`` (references.html §2.3.0.2)."""

    type: str
    id: str
    version: str | None
    base: str | None  # service base URL of an absolute reference, else None


_REFERENCE = re.compile(
    r"^(?:(?P<base>https?://\S+?)/)?"
    r"(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<vid>[A-Za-z0-9\-.]{1,64}))?$"
)


@lru_cache(maxsize=1 << 16)
def parse_reference(reference: str) -> ParsedReference | None:
    """Type and id of a relative or absolute RESTful reference; None for any other form.

    ``#contained``, ``urn:uuid:``/``urn:oid:`` and URLs without a ``Type/id`` tail give None
    (references.html §2.3.0.2 to §2.3.0.4).
    """
    match = _REFERENCE.match(reference)
    if match is None or match["type"] not in all_fhir_type_names():
        return None
    return ParsedReference(match["type"], match["id"], match["vid"], match["base"])


def _reference_type(value: Any) -> str | None:
    if type(value) is not dict:
        return None
    reference = value.get("reference")
    if type(reference) is not str:
        return None
    parsed = parse_reference(reference)
    return None if parsed is None else parsed.type


# --------------------------------------------------------------------------- model types


@cache
def _is_type(type_name: str, super_type: str) -> bool:
    """``type_name`` is ``super_type`` or derives from it (fhirpath.html §6.3, R4 model)."""
    current: str | None = type_name
    while current:
        if current == super_type:
            return True
        current = _TYPE2PARENT.get(current) or _PATH2TYPE.get(current)
    return False


def _node_is(path: str, type_name: str) -> bool:
    """Whether a node whose model path is ``path`` is of type ``type_name``."""
    if path.startswith("System."):
        return path[len("System.") :] == type_name
    if "." in path:
        return _is_type("BackboneElement", type_name)
    return _is_type(path, type_name)


# --------------------------------------------------------------------------- parsing

_TOKEN = re.compile(
    r"\s*(?:(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|`(?P<qident>[^`]+)`"
    r"|'(?P<str>[^'\\]*)'|(?P<num>\d+)(?![.\d])|(?P<sym>[.()\[\]|=])|(?P<other>\S))"
)


@dataclass(frozen=True, slots=True)
class _Root:
    type_name: str


@dataclass(frozen=True, slots=True)
class _Member:
    base: _Node
    name: str


@dataclass(frozen=True, slots=True)
class _Index:
    base: _Node
    index: int


@dataclass(frozen=True, slots=True)
class _TypeFilter:
    base: _Node
    type_name: str


@dataclass(frozen=True, slots=True)
class _WhereResolve:
    base: _Node
    type_name: str


@dataclass(frozen=True, slots=True)
class _WhereEquals:
    base: _Node
    field: str
    literal: str


@dataclass(frozen=True, slots=True)
class _Union:
    left: _Node
    right: _Node


_Node = _Root | _Member | _Index | _TypeFilter | _WhereResolve | _WhereEquals | _Union


def _tokenize(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = expression.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match["other"] is not None:
            raise UnsupportedExpression(expression)
        position = match.end()
        group = match.lastgroup
        assert group is not None
        tokens.append(("ident" if group == "qident" else group, match[group]))
    return tokens


class _Parser:
    """Recursive descent over the subset grammar (fhirpath.html Appendix A precedence)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.pos = 0

    def fail(self) -> UnsupportedExpression:
        return UnsupportedExpression(self.expression)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise self.fail()
        self.pos += 1
        return token[1]

    def at(self, kind: str, value: str | None = None) -> bool:
        token = self.peek()
        return token is not None and token[0] == kind and (value is None or token[1] == value)

    def parse(self) -> _Node:
        node = self.union()
        if self.peek() is not None:
            raise self.fail()
        return node

    def union(self) -> _Node:
        node = self.type_expression()
        while self.at("sym", "|"):
            self.pos += 1
            node = _Union(node, self.type_expression())
        return node

    def type_expression(self) -> _Node:
        node = self.postfix()
        if self.at("ident", "as"):
            self.pos += 1
            node = _TypeFilter(node, self.type_name())
        return node

    def type_name(self) -> str:
        name = self.take("ident")
        if self.at("sym", "."):
            raise self.fail()
        return name

    def postfix(self) -> _Node:
        node = self.primary()
        while True:
            if self.at("sym", "."):
                self.pos += 1
                name = self.take("ident")
                node = self.function(node, name) if self.at("sym", "(") else _Member(node, name)
            elif self.at("sym", "["):
                self.pos += 1
                index = int(self.take("num"))
                self.take("sym", "]")
                node = _Index(node, index)
            else:
                return node

    def primary(self) -> _Node:
        if self.at("sym", "("):
            self.pos += 1
            node = self.union()
            self.take("sym", ")")
            return node
        name = self.take("ident")
        if not name[:1].isupper() or self.at("sym", "("):
            raise self.fail()
        return _Root(name)

    def function(self, base: _Node, name: str) -> _Node:
        self.take("sym", "(")
        node: _Node
        if name in ("ofType", "as"):
            node = _TypeFilter(base, self.type_name())
        elif name == "where" and self.at("ident", "resolve"):
            self.pos += 1
            self.take("sym", "(")
            self.take("sym", ")")
            self.take("ident", "is")
            node = _WhereResolve(base, self.type_name())
        elif name == "where":
            field = self.take("ident")
            self.take("sym", "=")
            node = _WhereEquals(base, field, self.take("str"))
        else:
            raise self.fail()
        self.take("sym", ")")
        return node


# --------------------------------------------------------------------------- compiling

# A compiled node is a list of operations plus the static model path of its result
# (None when it is not known statically, e.g. a choice element of several types).
_Op = tuple[Any, ...]


class _Choice(NamedTuple):
    path: str  # model path without the type suffix, e.g. "ServiceRequest.occurrence"
    key: str
    suffixes: tuple[str, ...]


def _child(path: str | None, key: str, expression: str) -> str | _Choice:
    if path is None or path in _RESOURCE_BASES or path.startswith("System."):
        raise UnsupportedExpression(expression)
    child = f"{path}.{key}"
    child = _ELSEWHERE.get(child, child)
    suffixes = _CHOICES.get(child)
    if suffixes:
        return _Choice(child, key, tuple(suffixes))
    if key == "extension":
        return "Extension"
    return _PATH2TYPE.get(child, child)


def _choice_type(choice: _Choice, suffix: str) -> str:
    full = choice.path + suffix
    return _PATH2TYPE.get(full, full)


def _compile(node: _Node, expression: str) -> tuple[list[_Op], str | None]:
    if isinstance(node, _Root):
        return [("root", node.type_name)], node.type_name
    if isinstance(node, _Member):
        ops, path = _compile(node.base, expression)
        child = _child(path, node.name, expression)
        if isinstance(child, _Choice):
            return [*ops, ("choice", child.key, child.suffixes, None)], None
        return [*ops, ("member", node.name)], child
    if isinstance(node, _TypeFilter):
        return _compile_type_filter(node, expression)
    if isinstance(node, _Index):
        ops, path = _compile(node.base, expression)
        return [*ops, ("index", node.index)], path
    if isinstance(node, _WhereResolve):
        ops, path = _compile(node.base, expression)
        return [*ops, ("where_resolve", node.type_name)], path
    if isinstance(node, _WhereEquals):
        ops, path = _compile(node.base, expression)
        if not isinstance(_child(path, node.field, expression), str):
            raise UnsupportedExpression(expression)
        return [*ops, ("where_equals", node.field, node.literal)], path
    left, left_path = _compile(node.left, expression)
    right, right_path = _compile(node.right, expression)
    return [("union", left, right)], left_path if left_path == right_path else None


def _compile_type_filter(node: _TypeFilter, expression: str) -> tuple[list[_Op], str | None]:
    base = node.base
    if isinstance(base, _Member):
        ops, path = _compile(base.base, expression)
        child = _child(path, base.name, expression)
        if isinstance(child, _Choice):
            allowed = tuple(
                s for s in child.suffixes if _node_is(_choice_type(child, s), node.type_name)
            )
            out = _choice_type(child, allowed[0]) if len(allowed) == 1 else None
            return [*ops, ("choice", child.key, child.suffixes, frozenset(allowed))], out
    ops, path = _compile(base, expression)
    if path is None:
        raise UnsupportedExpression(expression)
    if path in _RESOURCE_BASES:
        concrete = node.type_name in all_fhir_type_names()
        return [*ops, ("resource_type", node.type_name)], node.type_name if concrete else path
    if _node_is(path, node.type_name):
        return ops, path
    return [*ops, ("nothing",)], path


# --------------------------------------------------------------------------- runtime steps


def _members_step(keys: tuple[str, ...]) -> _Step:
    def step(items: list[Any]) -> list[Any]:
        for key in keys:
            out: list[Any] = []
            for item in items:
                if type(item) is dict:
                    value = item.get(key)
                    if value is None:
                        continue
                    if type(value) is list:
                        out.extend(v for v in value if v is not None)
                    else:
                        out.append(value)
            if not out:
                return out
            items = out
        return items

    return step


def _root_step(type_name: str) -> _Step:
    def step(items: list[Any]) -> list[Any]:
        return [i for i in items if type(i) is dict and i.get("resourceType") == type_name]

    return step


def _choice_step(key: str, suffixes: tuple[str, ...], allowed: frozenset[str] | None) -> _Step:
    fields = tuple((key + suffix, allowed is None or suffix in allowed) for suffix in suffixes)

    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is not dict:
                continue
            for field, keep in fields:
                value = item.get(field)
                if value is not None:
                    if keep:
                        if type(value) is list:
                            out.extend(v for v in value if v is not None)
                        else:
                            out.append(value)
                    break
        return out

    return step


def _index_step(index: int) -> _Step:
    def step(items: list[Any]) -> list[Any]:
        return [items[index]] if index < len(items) else []

    return step


def _where_resolve_step(type_name: str) -> _Step:
    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            target = _reference_type(item)
            if target is not None and _is_type(target, type_name):
                out.append(item)
        return out

    return step


def _where_equals_step(field: str, literal: str) -> _Step:
    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if type(item) is dict:
                value = item.get(field)
                if type(value) is list:
                    value = value[0] if len(value) == 1 else None
                if value == literal and type(value) is str:
                    out.append(item)
        return out

    return step


def _resource_type_step(type_name: str) -> _Step:
    def step(items: list[Any]) -> list[Any]:
        return [
            i
            for i in items
            if type(i) is dict
            and isinstance(i.get("resourceType"), str)
            and _is_type(i["resourceType"], type_name)
        ]

    return step


def _nothing(items: list[Any]) -> list[Any]:
    return []


def _distinct_key(value: Any) -> tuple[str, str]:
    if type(value) is str:
        return ("s", value)
    try:
        return ("j", json.dumps(value, sort_keys=True))
    except TypeError:
        return ("o", str(id(value)))


def _union_step(left: _Step, right: _Step) -> _Step:
    def step(items: list[Any]) -> list[Any]:
        seen: dict[tuple[str, str], Any] = {}
        for value in left(items) + right(items):
            seen.setdefault(_distinct_key(value), value)
        return list(seen.values())

    return step


def _build(ops: list[_Op]) -> _Step:
    steps: list[_Step] = []
    keys: list[str] = []
    for op in ops:
        if op[0] == "member":
            keys.append(op[1])
            continue
        if keys:
            steps.append(_members_step(tuple(keys)))
            keys = []
        kind = op[0]
        if kind == "root":
            steps.append(_root_step(op[1]))
        elif kind == "choice":
            steps.append(_choice_step(op[1], op[2], op[3]))
        elif kind == "index":
            steps.append(_index_step(op[1]))
        elif kind == "where_resolve":
            steps.append(_where_resolve_step(op[1]))
        elif kind == "where_equals":
            steps.append(_where_equals_step(op[1], op[2]))
        elif kind == "resource_type":
            steps.append(_resource_type_step(op[1]))
        elif kind == "nothing":
            steps.append(_nothing)
        else:
            steps.append(_union_step(_build(op[1]), _build(op[2])))
    if keys:
        steps.append(_members_step(tuple(keys)))
    if len(steps) == 1:
        return steps[0]
    chain = tuple(steps)

    def run(items: list[Any]) -> list[Any]:
        for step in chain:
            items = step(items)
            if not items:
                return items
        return items

    return run


def _visible(values: list[Any]) -> list[Any]:
    """Drops elements that hold nothing but extensions, as fhirpathpy's output does."""
    for value in values:
        if type(value) is dict and len(value) == 1 and "extension" in value:
            return [v for v in values if not (type(v) is dict and len(v) == 1 and "extension" in v)]
    return values


@cache
def _ops(expression: str) -> list[_Op]:
    """The compiled steps of ``expression`` (raises UnsupportedExpression)."""
    ops, _ = _compile(_Parser(expression).parse(), expression)
    return ops


def _compiled(expression: str) -> Evaluator:
    ops = _ops(expression)
    if len(ops) > 1 and ops[0][0] == "root" and all(op[0] == "member" for op in ops[1:]):
        return _simple_path(ops[0][1], tuple(op[1] for op in ops[1:]))
    step = _build(ops)

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        return _visible(step([resource]))

    return evaluate


def _simple_path(type_name: str, keys: tuple[str, ...]) -> Evaluator:
    first, rest = keys[0], _members_step(keys[1:]) if len(keys) > 1 else None

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        if resource.get("resourceType") != type_name:
            return []
        value = resource.get(first)
        if value is None:
            return []
        items = [v for v in value if v is not None] if type(value) is list else [value]
        if rest is not None and items:
            items = rest(items)
        return _visible(items)

    return evaluate


# --------------------------------------------------------------------------- fallback

_create_node: Callable[..., Any] = ResourceNode.create_node


def _resolve(inputs: list[Any]) -> list[Any]:
    """``resolve()`` for search expressions: a node typed by the reference's target type."""
    out: list[Any] = []
    for item in inputs:
        target = _reference_type(item)
        if target is not None:
            out.append(_create_node({"resourceType": target}, target))
    return out


_FHIRPATHPY_OPTIONS: dict[str, Any] = {"userInvocationTable": {"resolve": {"fn": _resolve}}}


@cache
def fhirpathpy_evaluator(expression: str) -> Evaluator:
    """The expression evaluated by fhirpathpy (R4 model, ``resolve()`` as above)."""
    compiled = fhirpathpy.compile(expression, _MODEL, _FHIRPATHPY_OPTIONS)

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        return list(compiled(resource, None))

    return evaluate


@cache
def is_compiled(expression: str) -> bool:
    """Whether ``expression`` lies in the compiled subset (else fhirpathpy evaluates it)."""
    try:
        _compiled(expression)
    except UnsupportedExpression:
        return False
    return True


_EXISTS_AND_NOT_FALSE = re.compile(r"^(?P<path>[A-Za-z][\w.]*)\.exists\(\) and (?P=path) != false$")


def _exists_and_not_false(path: Evaluator) -> Evaluator:
    """``X.exists() and X != false`` (FHIRPath §5.1.2, §6.1.2): true when X has a value
    other than a single false."""

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        values = path(resource)
        return [bool(values) and values != [False]]

    return evaluate


@cache
def leading_member(expression: str) -> str | None:
    """The element of the resource that ``expression`` starts from (``for`` in
    ``Task.for.where(resolve() is Patient)``) when the expression is empty wherever the
    resource lacks that element: a path from the root, whose later steps (members,
    choices, indexes, ``where``, ``ofType``, unions of such steps) each give nothing for
    nothing. None for any other expression (``exists()``, a union of two paths, what only
    fhirpathpy evaluates)."""
    if _EXISTS_AND_NOT_FALSE.match(expression):
        return None
    try:
        ops = _ops(expression)
    except UnsupportedExpression:
        return None
    if len(ops) > 1 and ops[0][0] == "root" and ops[1][0] == "member":
        member: str = ops[1][1]
        return member
    return None


@cache
def compile_path(expression: str) -> Evaluator:
    """A callable evaluating the FHIRPath ``expression`` on a resource's JSON dict."""
    try:
        exists_form = _EXISTS_AND_NOT_FALSE.match(expression)
        if exists_form:
            return _exists_and_not_false(_compiled(exists_form["path"]))
        return _compiled(expression)
    except UnsupportedExpression:
        return fhirpathpy_evaluator(expression)
