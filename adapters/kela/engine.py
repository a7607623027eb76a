"""The interpreter of the declarative mapping templates in ``mappings/kela/``.

A template is JSON shaped like its output (a FHIR resource, or the content of an XML
message body). Any object with one key starting with ``$`` is an expression:

=============  ==================================================================
``$path``      XPath 1.0 on the current XML element (inbound); ``as``: ``text``
               (default, trimmed), ``token`` (whitespace collapsed), ``boolean``,
               ``integer``, ``decimal``, ``list`` (all texts)
``$fhirpath``  FHIRPath on the input resource named by ``on``, or on the current
               node (outbound); ``as``: ``first`` (default) or ``list``; the string
               variables are available as ``%name``
``$var``       a variable of the mapping's ``let``
``$fn``        a named function of :mod:`adapters.kela.functions`, with ``args``
``$code``      a concept of a code table: ``key`` (code, or a ``map`` value when
               ``by`` names the map key), ``field``: ``coding`` (default), ``code``,
               ``display`` or ``map.<name>``; ``lang`` for the display (default fi)
``$system``    the system URL of a code table
``$each``      the rendered ``do`` for each node the path selects (lists splice)
``$if``        ``then`` when the value is present and not false, else ``else``
``$format``    a string with ``{variable}`` placeholders (absent if any is absent)
``$fullUrl``   the ``urn:uuid:`` fullUrl of a Bundle entry (with ``key`` for
               entries made per repeated element)
``$first``     the first present value of a list of expressions
=============  ==================================================================

Absent values (None, "", [], {}) are left out. An object that holds expressions and
none of whose expressions produced a value is left out as a whole, so e.g. an
Identifier with a literal ``system`` and an absent ``value`` disappears, and no
element is ever empty (FHIR R4 ele-1).
"""

from __future__ import annotations

import re
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import fhirpathpy
from lxml import etree

from adapters.kela.codes import CodeTable, code_tables
from adapters.kela.directory import Directory
from adapters.kela.errors import ErrorCode, KelaMessageError, MappingError

Direction = Literal["inbound", "outbound"]
DIRECTIONS: tuple[Direction, ...] = ("inbound", "outbound")


@dataclass(slots=True)
class Scope:
    """What an expression is evaluated against."""

    message: str
    node: Any = None
    variables: dict[str, Any] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    full_urls: Mapping[tuple[str, str], str] = field(default_factory=dict)
    directory: Directory | None = None
    sender: str | None = None

    def at(self, node: Any, variables: dict[str, Any] | None = None) -> Scope:
        """The same scope, evaluated against ``node`` (with ``variables`` instead of its
        own, if given)."""
        return Scope(
            self.message,
            node,
            self.variables if variables is None else variables,
            self.resources,
            self.full_urls,
            self.directory,
            self.sender,
        )


@dataclass(frozen=True, slots=True)
class Function:
    """A named function callable from a template as ``{"$fn": name, "args": [...]}``."""

    name: str
    call: Callable[..., Any]
    min_args: int
    max_args: int | None


@dataclass(slots=True)
class CompileContext:
    """What a template may refer to, checked when the mapping file is loaded."""

    file: str
    direction: Direction
    functions: Mapping[str, Function]
    namespaces: Mapping[str, str] = field(default_factory=dict)
    variables: set[str] = field(default_factory=set)
    entries: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)

    def fail(self, where: str, problem: str) -> MappingError:
        return MappingError(f"{self.file} at {where}: {problem}")


_EMPTY_WHEN_FALSY = frozenset({str, list, dict})


def is_absent(value: Any) -> bool:
    """None, or an empty string, list or object: left out of the output."""
    return value is None or (not value and type(value) in _EMPTY_WHEN_FALSY)


# ---------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------


class Node(ABC):
    @property
    def dynamic(self) -> bool:
        """Whether the node computes its value (literals and literal-only objects don't)."""
        return True

    @abstractmethod
    def render(self, scope: Scope) -> Any: ...


@dataclass(slots=True)
class LiteralNode(Node):
    value: Any

    @property
    def dynamic(self) -> bool:
        return False

    def render(self, scope: Scope) -> Any:
        return self.value


@dataclass(slots=True)
class ObjectNode(Node):
    items: list[tuple[str, Node]]
    computes: bool = field(init=False, default=False)
    # Every key in template order, the scalar literals with their values: a render
    # starts from a copy of it and sets (or drops) only the keys of _rendered.
    _template: dict[str, Any] = field(init=False, default_factory=dict)
    # (key, node, whether the node computes) of the items that are not scalar literals.
    _rendered: list[tuple[str, Node, bool]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        for key, node in self.items:
            if isinstance(node, LiteralNode):
                if not is_absent(node.value):
                    self._template[key] = node.value
            else:
                self._template[key] = None
                self._rendered.append((key, node, node.dynamic))
        self.computes = any(dynamic for _, _, dynamic in self._rendered)

    @property
    def dynamic(self) -> bool:
        return self.computes

    def render(self, scope: Scope) -> Any:
        out = self._template.copy()
        produced = False
        for key, node, dynamic in self._rendered:
            value = node.render(scope)
            if value is None or (not value and type(value) in _EMPTY_WHEN_FALSY):
                del out[key]
                continue
            out[key] = value
            produced = produced or dynamic
        if self.computes and not produced:
            return None
        return out or None


@dataclass(slots=True)
class ListNode(Node):
    items: list[Node]
    computes: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.computes = any(node.dynamic for node in self.items)

    @property
    def dynamic(self) -> bool:
        return self.computes

    def render(self, scope: Scope) -> Any:
        out: list[Any] = []
        for node in self.items:
            _append(out, node.render(scope))
        return out or None


def _append(out: list[Any], value: Any) -> None:
    if isinstance(value, list):
        out.extend(item for item in value if not is_absent(item))
    elif not is_absent(value):
        out.append(value)


PathMode = Literal["text", "token", "boolean", "integer", "decimal", "list", "nodes"]
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


@dataclass(slots=True)
class PathNode(Node):
    expression: str
    xpath: Any
    mode: PathMode

    def render(self, scope: Scope) -> Any:
        found = self.xpath(scope.node)
        results = found if isinstance(found, list) else [found]
        if self.mode == "nodes":
            return results
        if self.mode == "list":
            return [t for t in map(_text_of, results) if t] or None
        # The first non-empty text; the rest are not read.
        text = next(filter(None, map(_text_of, results)), None)
        if text is None:
            return None
        if self.mode == "token":
            return " ".join(text.split())
        if self.mode == "boolean":
            return _BOOLEANS.get(text)
        if self.mode == "integer":
            return int(text)
        if self.mode == "decimal":
            try:
                return Decimal(text)
            except InvalidOperation:
                return None
        return text


def _text_of(result: Any) -> str:
    """The XPath string-value of a result (XPath 1.0 §5): an element's is the text of
    all its descendants, which for an element without children is its own text."""
    if isinstance(result, etree._Element):
        if len(result) == 0:
            return (result.text or "").strip()
        return "".join(result.itertext()).strip()
    if isinstance(result, bool):
        return "true" if result else "false"
    return str(result).strip()


_FHIRPATH_BUILTINS = frozenset({"resource", "context", "rootResource", "ucum", "sct", "loinc"})


@dataclass(slots=True)
class FhirPathNode(Node):
    expression: str
    compiled: Callable[..., list[Any]]
    on: str | None
    many: bool

    def render(self, scope: Scope) -> Any:
        target = scope.resources.get(self.on) if self.on is not None else scope.node
        if target is None:
            return None
        environment = {k: v for k, v in scope.variables.items() if isinstance(v, str)}
        results = [r for r in self.compiled(target, environment) if not is_absent(r)]
        if self.many:
            return results or None
        return results[0] if results else None


@dataclass(slots=True)
class VarNode(Node):
    name: str

    def render(self, scope: Scope) -> Any:
        return scope.variables.get(self.name)


@dataclass(slots=True)
class FunctionNode(Node):
    function: Function
    args: list[Node]

    def render(self, scope: Scope) -> Any:
        return self.function.call(scope, *(arg.render(scope) for arg in self.args))


@dataclass(slots=True)
class CodeNode(Node):
    table: CodeTable
    key: Node
    by: str | None
    field: str
    language: Node | None

    def render(self, scope: Scope) -> Any:
        key = self.key.render(scope)
        if is_absent(key):
            return None
        if isinstance(key, list):
            return [self._one(scope, str(k)) for k in key]
        return self._one(scope, str(key))

    def _one(self, scope: Scope, key: str) -> Any:
        concept = self.table.find(self.by, key) if self.by else self.table.concept(key)
        if concept is None:
            where = f" (as {self.by})" if self.by else ""
            raise KelaMessageError(
                ErrorCode.UNKNOWN_CODE,
                f"{scope.message}: '{key}'{where} is not a code of {self.table.title} "
                f"({self.table.url})",
            )
        language = self.language.render(scope) if self.language is not None else None
        language = language if isinstance(language, str) and language else "fi"
        if self.field == "coding":
            return self.table.coding(concept, language)
        if self.field == "code":
            return concept.code
        if self.field == "display":
            return concept.display.get(language) or concept.display["fi"]
        values = concept.map.get(self.field.removeprefix("map."), ())
        return values[0] if len(values) == 1 else list(values) or None


@dataclass(slots=True)
class EachNode(Node):
    select: Node
    body: Node

    def render(self, scope: Scope) -> Any:
        out: list[Any] = []
        for item in self.select.render(scope) or []:
            _append(out, self.body.render(scope.at(item)))
        return out or None


@dataclass(slots=True)
class IfNode(Node):
    condition: Node
    then: Node | None
    otherwise: Node | None

    def render(self, scope: Scope) -> Any:
        value = self.condition.render(scope)
        chosen = self.otherwise if is_absent(value) or value is False else self.then
        return chosen.render(scope) if chosen is not None else None


@dataclass(slots=True)
class FormatNode(Node):
    template: str
    names: list[str]

    def render(self, scope: Scope) -> Any:
        values = {name: scope.variables.get(name) for name in self.names}
        if any(is_absent(v) for v in values.values()):
            return None
        return self.template.format_map(values)


@dataclass(slots=True)
class FullUrlNode(Node):
    entry: str
    key: Node | None

    def render(self, scope: Scope) -> Any:
        key = self.key.render(scope) if self.key is not None else ""
        return scope.full_urls.get((self.entry, "" if key is None else str(key)))


@dataclass(slots=True)
class FirstNode(Node):
    options: list[Node]

    def render(self, scope: Scope) -> Any:
        for node in self.options:
            value = node.render(scope)
            if not is_absent(value):
                return value
        return None


# ---------------------------------------------------------------------------
# Compiling
# ---------------------------------------------------------------------------


def compile_template(raw: Any, ctx: CompileContext, where: str) -> Node:
    """Turns a JSON template into a tree of nodes, checking every name it uses."""
    if isinstance(raw, dict):
        operators = [key for key in raw if key.startswith("$")]
        if not operators:
            return ObjectNode(
                [(k, compile_template(v, ctx, f"{where}.{k}")) for k, v in raw.items()]
            )
        if len(operators) > 1:
            raise ctx.fail(where, f"an expression has one operator, not {operators}")
        operator = operators[0]
        compiler = _OPERATORS.get(operator)
        if compiler is None:
            raise ctx.fail(where, f"unknown operator {operator}")
        options = {k: v for k, v in raw.items() if k != operator}
        allowed = _OPTIONS[operator]
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ctx.fail(where, f"{operator} takes no option {unknown}")
        return compiler(raw[operator], options, ctx, f"{where}.{operator}")
    if isinstance(raw, list):
        return ListNode([compile_template(v, ctx, f"{where}[{i}]") for i, v in enumerate(raw)])
    if raw is None or isinstance(raw, str | int | float | bool):
        return LiteralNode(raw)
    raise ctx.fail(where, f"unexpected value {raw!r}")


def _string(value: Any, ctx: CompileContext, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.fail(where, f"expected a non-empty string, got {value!r}")
    return value


def compile_xpath(expression: Any, ctx: CompileContext, where: str, mode: PathMode) -> PathNode:
    text = _string(expression, ctx, where)
    if ctx.direction != "inbound":
        raise ctx.fail(where, "$path (XPath) reads XML; outbound mappings read FHIR with $fhirpath")
    try:
        xpath = etree.XPath(text, namespaces=dict(ctx.namespaces), smart_strings=False)
    except etree.XPathSyntaxError as exc:
        raise ctx.fail(where, f"invalid XPath {text!r}: {exc}") from None
    return PathNode(text, xpath, mode)


def _compile_path(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    mode = options.get("as", "text")
    if mode not in ("text", "token", "boolean", "integer", "decimal", "list"):
        raise ctx.fail(where, f"unknown $path mode {mode!r}")
    return compile_xpath(value, ctx, where, mode)


def compile_fhirpath(
    expression: Any, on: Any, many: bool, ctx: CompileContext, where: str
) -> FhirPathNode:
    text = _string(expression, ctx, where)
    if ctx.direction != "outbound":
        raise ctx.fail(where, "$fhirpath reads FHIR; inbound mappings read XML with $path")
    if on is not None and on not in ctx.inputs:
        raise ctx.fail(where, f"'on' names no input: {on!r} (inputs: {sorted(ctx.inputs)})")
    for name in re.findall(r"%([A-Za-z_]\w*)", text):
        if name not in ctx.variables and name not in _FHIRPATH_BUILTINS:
            raise ctx.fail(where, f"%{name} is not a variable defined before this point")
    try:
        compiled = fhirpathpy.compile(text)
    except Exception as exc:  # fhirpathpy raises plain exceptions on syntax errors
        raise ctx.fail(where, f"invalid FHIRPath {text!r}: {exc}") from None
    return FhirPathNode(text, compiled, on, many)


def _compile_fhirpath(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    mode = options.get("as", "first")
    if mode not in ("first", "list"):
        raise ctx.fail(where, f"unknown $fhirpath mode {mode!r}")
    return compile_fhirpath(value, options.get("on"), mode == "list", ctx, where)


def _compile_var(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    name = _string(value, ctx, where)
    if name not in ctx.variables:
        raise ctx.fail(where, f"variable {name!r} is not defined before this point")
    return VarNode(name)


def _compile_fn(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    name = _string(value, ctx, where)
    function = ctx.functions.get(name)
    if function is None:
        raise ctx.fail(where, f"unknown function {name!r}")
    raw_args = options.get("args", [])
    if not isinstance(raw_args, list):
        raise ctx.fail(where, "args must be a list")
    count = len(raw_args)
    if count < function.min_args or (function.max_args is not None and count > function.max_args):
        raise ctx.fail(where, f"{name} does not take {count} arguments")
    args = [compile_template(a, ctx, f"{where}.args[{i}]") for i, a in enumerate(raw_args)]
    return FunctionNode(function, args)


def _table(value: Any, ctx: CompileContext, where: str) -> CodeTable:
    name = _string(value, ctx, where)
    table = code_tables().get(name)
    if table is None:
        raise ctx.fail(where, f"there is no code table {name!r}")
    return table


def _compile_code(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    table = _table(value, ctx, where)
    if "key" not in options:
        raise ctx.fail(where, "$code needs a key")
    by = options.get("by")
    fields = {"coding", "code", "display"} | {f"map.{k}" for c in table.concepts for k in c.map}
    chosen = options.get("field", "coding")
    if chosen not in fields:
        raise ctx.fail(where, f"{table.name} has no field {chosen!r} (fields: {sorted(fields)})")
    if by is not None and not any(by in c.map for c in table.concepts):
        raise ctx.fail(where, f"{table.name} maps no {by!r}")
    key = compile_template(options["key"], ctx, f"{where}.key")
    language = options.get("lang")
    lang_node = compile_template(language, ctx, f"{where}.lang") if language is not None else None
    return CodeNode(table, key, by, chosen, lang_node)


def _compile_system(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    return LiteralNode(_table(value, ctx, where).url)


def _compile_each(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    if "do" not in options:
        raise ctx.fail(where, "$each needs a 'do' template")
    select: Node
    if ctx.direction == "inbound":
        select = compile_xpath(value, ctx, where, "nodes")
    else:
        select = compile_fhirpath(value, options.get("on"), True, ctx, where)
    return EachNode(select, compile_template(options["do"], ctx, f"{where}.do"))


def _compile_if(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    then = options.get("then")
    otherwise = options.get("else")
    return IfNode(
        compile_template(value, ctx, where),
        compile_template(then, ctx, f"{where}.then") if then is not None else None,
        compile_template(otherwise, ctx, f"{where}.else") if otherwise is not None else None,
    )


def _compile_format(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    template = _string(value, ctx, where)
    names: list[str] = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or spec or conversion or name not in ctx.variables:
            raise ctx.fail(where, f"{{{name}}} is not a variable defined before this point")
        names.append(name)
    return FormatNode(template, names)


def _compile_full_url(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    name = _string(value, ctx, where)
    if name not in ctx.entries:
        raise ctx.fail(where, f"there is no entry named {name!r}")
    key = options.get("key")
    return FullUrlNode(
        name, compile_template(key, ctx, f"{where}.key") if key is not None else None
    )


def _compile_first(value: Any, options: dict[str, Any], ctx: CompileContext, where: str) -> Node:
    if not isinstance(value, list) or not value:
        raise ctx.fail(where, "$first takes a non-empty list of expressions")
    return FirstNode([compile_template(v, ctx, f"{where}[{i}]") for i, v in enumerate(value)])


_Compiler = Callable[[Any, dict[str, Any], CompileContext, str], Node]

_OPERATORS: dict[str, _Compiler] = {
    "$path": _compile_path,
    "$fhirpath": _compile_fhirpath,
    "$var": _compile_var,
    "$fn": _compile_fn,
    "$code": _compile_code,
    "$system": _compile_system,
    "$each": _compile_each,
    "$if": _compile_if,
    "$format": _compile_format,
    "$fullUrl": _compile_full_url,
    "$first": _compile_first,
}

_OPTIONS: dict[str, frozenset[str]] = {
    "$path": frozenset({"as"}),
    "$fhirpath": frozenset({"on", "as"}),
    "$var": frozenset(),
    "$fn": frozenset({"args"}),
    "$code": frozenset({"key", "by", "field", "lang"}),
    "$system": frozenset(),
    "$each": frozenset({"do", "on"}),
    "$if": frozenset({"then", "else"}),
    "$format": frozenset(),
    "$fullUrl": frozenset({"key"}),
    "$first": frozenset(),
}


def compile_variables(raw: Any, ctx: CompileContext, where: str) -> tuple[tuple[str, Node], ...]:
    """The ``let`` object: variables in order, each may use the ones before it."""
    if not isinstance(raw, dict):
        raise ctx.fail(where, "let must be an object")
    compiled: list[tuple[str, Node]] = []
    for name, template in raw.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ctx.fail(f"{where}.{name}", "a variable name is a letter and word characters")
        compiled.append((name, compile_template(template, ctx, f"{where}.{name}")))
        ctx.variables.add(name)
    return tuple(compiled)


def evaluate_variables(variables: Iterable[tuple[str, Node]], scope: Scope) -> None:
    for name, node in variables:
        scope.variables[name] = node.render(scope)
