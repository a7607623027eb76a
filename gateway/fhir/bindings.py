"""Required terminology bindings of coded elements (R4 terminologies.html §4.1.0.1).

An element of type ``code`` with a *required* binding must hold a code of the bound
ValueSet. The R4B models check only the lexical form of a code, so this module checks
the codes, driven by ``schemas/fhir/required-bindings.json`` (the expanded ValueSets
and the element types of the stored resource types and the datatypes they use; see
``schemas/fhir/README.md``).

The resource is walked once along its complex elements, extensions
(``Extension.value[x]`` and the extensions of primitive values, json.html §2.6.2.1)
and the resources in ``contained``, ``Bundle.entry.resource`` and
``Bundle.entry.response.outcome``, each checked with its own type. Elements the data
does not know and values of the wrong JSON type are skipped: structure is checked by
:mod:`gateway.fhir.validation`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from gateway.errors import Issue
from gateway.fhir.resource_types import STORED_TYPES
from schemas import load_json

DATA_FILE: Final = "fhir/required-bindings.json"

# A type: element name -> (allowed codes or None, child type or None, definition
# path, ValueSet url). The child type is a table, or _RESOURCE for an element that
# holds a resource of any type.
_Table = dict[str, "_Element"]
_Element = tuple[frozenset[str] | None, "_Table | None", str, str]
# A location: (parent, element name, index or -1); rendered only for an issue.
_Path = tuple["_Path | None", str, int]

_RESOURCE: Final[_Table] = {}


@cache
def _tables() -> dict[str, _Table]:
    """Per type (resource, datatype or backbone path such as ``Task.restriction``) its
    table of elements; built once from the data file."""
    data: dict[str, Any] = load_json(DATA_FILE)
    value_sets = {url: frozenset(codes) for url, codes in data["valueSets"].items()}
    types: dict[str, dict[str, dict[str, str]]] = data["types"]
    tables: dict[str, _Table] = {name: {} for name in types}
    for name, spec in types.items():
        table = tables[name]
        for element, url in spec.get("codes", {}).items():
            table[element] = (value_sets[url], None, f"{name}.{element}", url)
        for element, child in spec.get("children", {}).items():
            target = _RESOURCE if child == "Resource" else tables[child]
            table[element] = (None, target, f"{name}.{element}", "")
    return tables


@cache
def _resource_tables() -> dict[str, _Table]:
    """The tables of the stored resource types, by resource type name."""
    tables = _tables()
    return {name: tables[name] for name in STORED_TYPES}


def _resource_table(value: dict[str, Any]) -> _Table | None:
    name = value.get("resourceType")
    return _resource_tables().get(name) if type(name) is str else None


def _render(path: _Path) -> str:
    parts: list[str] = []
    node: _Path | None = path
    while node is not None:
        parent, name, index = node
        parts.append(name if index < 0 else f"{name}[{index}]")
        node = parent
    return ".".join(reversed(parts))


def _issue(code: str, spec: _Element, path: _Path) -> Issue:
    return Issue(
        "error",
        "code-invalid",
        f"'{code}' is not a valid code for {spec[2]} (required binding to {spec[3]})",
        (_render(path),),
    )


def check_required_bindings(resource: dict[str, Any]) -> list[Issue]:
    """Issues (``code-invalid``) for each code of ``resource`` that is not in the
    ValueSet of its required binding (R4 terminologies.html §4.1.0.1), with the
    FHIRPath of the code (``Patient.name[0].use``). Resources of types that are not
    stored are not checked."""
    root = _resource_table(resource)
    if root is None:
        return []
    issues: list[Issue] = []
    try:
        _walk(resource, root, (None, resource["resourceType"], -1), issues)
    except RecursionError:
        return [Issue("error", "too-costly", "The resource is nested too deeply to validate.")]
    return issues


def _walk(data: dict[str, Any], table: _Table, path: _Path, issues: list[Issue]) -> None:
    for key, value in data.items():
        spec = table.get(key)
        if spec is None:
            if key[:1] == "_":
                _primitive_extensions(value, (path, key[1:], -1), issues)
            continue
        allowed, child, _, _ = spec
        if allowed is not None:
            if type(value) is str:
                if value not in allowed:
                    issues.append(_issue(value, spec, (path, key, -1)))
            elif type(value) is list:
                for index, item in enumerate(value):
                    if type(item) is str and item not in allowed:
                        issues.append(_issue(item, spec, (path, key, index)))
        elif child is None:
            continue
        elif type(value) is dict:
            target = _resource_table(value) if child is _RESOURCE else child
            if target is not None:
                _walk(value, target, (path, key, -1), issues)
        elif type(value) is list:
            for index, item in enumerate(value):
                if type(item) is dict:
                    target = _resource_table(item) if child is _RESOURCE else child
                    if target is not None:
                        _walk(item, target, (path, key, index), issues)


def _primitive_extensions(value: Any, path: _Path, issues: list[Issue]) -> None:
    """The extensions of a primitive value (``_status``, json.html §2.6.2.1)."""
    element = _tables()["Element"]
    if type(value) is dict:
        _walk(value, element, path, issues)
    elif type(value) is list:
        parent, name, _ = path
        for index, item in enumerate(value):
            if type(item) is dict:
                _walk(item, element, (parent, name, index), issues)
