"""Loading the mapping files ``mappings/kela/<message>.inbound.json`` and
``<message>.outbound.json`` (one per message type and direction).

An inbound mapping names its XSD and namespace, a ``let`` of variables read from the
message, the ``source`` variable (Kela's id) the fullUrls derive from, the ``facts``
the endpoint needs, and the Bundle ``entries``: each a request and a resource
template, with ``when`` to include it only sometimes, ``each`` and ``key`` to make
one per repeated element, and its own ``let``. An outbound mapping names its input
resources, a ``let`` and the ``body`` template of the XML message. Everything is
compiled and checked once, when first used: a wrong name in a mapping file fails at
load, not per message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

from adapters.kela.engine import (
    DIRECTIONS,
    CompileContext,
    Direction,
    Node,
    compile_template,
    compile_variables,
    compile_xpath,
)
from adapters.kela.errors import MappingError
from adapters.kela.functions import FUNCTIONS
from adapters.kela.wire import message_schema

FACTS = frozenset(
    {
        "sourceId",
        "sentAt",
        "hetu",
        "municipalityCode",
        "wellbeingArea",
        "focus",
        "task",
        "consentGiven",
    }
)
REQUIRED_FACTS = frozenset(
    {"sourceId", "sentAt", "hetu", "municipalityCode", "wellbeingArea", "focus"}
)


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """One Bundle entry template (R4 bundle.html#transaction)."""

    name: str
    when: Node | None
    each: Node | None
    variables: tuple[tuple[str, Node], ...]
    key: Node | None
    request: Node
    resource: Node


@dataclass(frozen=True, slots=True)
class InputSpec:
    resource_type: str
    required: bool


@dataclass(frozen=True, slots=True)
class MessageMapping:
    """A compiled mapping file of either direction."""

    file: str
    message: str
    direction: Direction
    schema_file: str
    namespace: str
    description: str
    variables: tuple[tuple[str, Node], ...]
    # inbound
    source: str = ""
    facts: Node | None = None
    entries: tuple[EntrySpec, ...] = ()
    # outbound
    inputs: Mapping[str, InputSpec] | None = None
    body: Node | None = None


def _mapping_dir() -> Any:
    return resources.files("mappings").joinpath("kela")


def _require(raw: Mapping[str, Any], key: str, file: str) -> Any:
    if key not in raw:
        raise MappingError(f"{file}: missing {key!r}")
    return raw[key]


_ENTRY_KEYS = frozenset({"name", "when", "each", "let", "key", "request", "resource"})


def _compile_entries(raw: Any, ctx: CompileContext) -> tuple[EntrySpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ctx.fail("entries", "entries must be a non-empty list")
    names = [str(item.get("name", "")) for item in raw if isinstance(item, dict)]
    if len(names) != len(raw) or "" in names or len(set(names)) != len(names):
        raise ctx.fail("entries", "every entry is an object with a unique name")
    ctx.entries.update(names)
    specs: list[EntrySpec] = []
    for item, name in zip(raw, names, strict=True):
        where = f"entries[{name}]"
        unknown = sorted(set(item) - _ENTRY_KEYS)
        if unknown:
            raise ctx.fail(where, f"unknown keys {unknown}")
        if ("each" in item) != ("key" in item):
            raise ctx.fail(where, "an entry made per element needs both 'each' and 'key'")
        when = compile_template(item["when"], ctx, f"{where}.when") if "when" in item else None
        each = (
            compile_xpath(item["each"], ctx, f"{where}.each", "nodes") if "each" in item else None
        )
        outer = set(ctx.variables)
        variables = compile_variables(item.get("let", {}), ctx, f"{where}.let")
        specs.append(
            EntrySpec(
                name=name,
                when=when,
                each=each,
                variables=variables,
                key=compile_template(item["key"], ctx, f"{where}.key") if "key" in item else None,
                request=compile_template(_require(item, "request", where), ctx, f"{where}.request"),
                resource=compile_template(
                    _require(item, "resource", where), ctx, f"{where}.resource"
                ),
            )
        )
        ctx.variables = outer
    return tuple(specs)


def _compile_inputs(raw: Any, ctx: CompileContext) -> dict[str, InputSpec]:
    if not isinstance(raw, dict) or not raw:
        raise ctx.fail("inputs", "inputs must be a non-empty object")
    inputs: dict[str, InputSpec] = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("resourceType"), str):
            raise ctx.fail(f"inputs.{name}", "each input names its resourceType")
        inputs[name] = InputSpec(spec["resourceType"], bool(spec.get("required", True)))
    ctx.inputs.update(inputs)
    return inputs


def load_mapping(file_name: str) -> MessageMapping:
    """Reads and compiles ``mappings/kela/<file_name>``."""
    raw = orjson.loads(_mapping_dir().joinpath(file_name).read_bytes())
    message = str(_require(raw, "message", file_name))
    direction = _require(raw, "direction", file_name)
    if direction not in DIRECTIONS or not file_name.endswith(f".{direction}.json"):
        raise MappingError(f"{file_name}: direction {direction!r} does not match the file name")
    schema_file = str(_require(raw, "schema", file_name))
    namespace = str(_require(raw, "namespace", file_name))
    schema = message_schema(schema_file)
    if schema.target_namespace != namespace or message not in schema.elements:
        raise MappingError(
            f"{file_name}: {schema_file} declares no element {message} in namespace {namespace}"
        )
    ctx = CompileContext(
        file=file_name,
        direction=direction,
        functions=FUNCTIONS,
        namespaces=dict(_require(raw, "namespaces", file_name)) if direction == "inbound" else {},
    )
    if direction == "inbound" and namespace not in ctx.namespaces.values():
        raise MappingError(f"{file_name}: namespaces must bind a prefix to {namespace}")
    inputs = (
        _compile_inputs(_require(raw, "inputs", file_name), ctx)
        if direction == "outbound"
        else None
    )
    variables = compile_variables(raw.get("let", {}), ctx, "let")
    common: dict[str, Any] = {
        "file": file_name,
        "message": message,
        "direction": direction,
        "schema_file": schema_file,
        "namespace": namespace,
        "description": str(raw.get("description", "")),
        "variables": variables,
    }
    if direction == "outbound":
        body = compile_template(_require(raw, "body", file_name), ctx, "body")
        return MessageMapping(**common, inputs=inputs, body=body)
    source = str(_require(raw, "source", file_name))
    if source not in ctx.variables:
        raise MappingError(f"{file_name}: source {source!r} is not a variable of let")
    facts_raw = _require(raw, "facts", file_name)
    if not isinstance(facts_raw, dict) or not REQUIRED_FACTS <= set(facts_raw) <= FACTS:
        raise MappingError(
            f"{file_name}: facts must give {sorted(REQUIRED_FACTS)} and may give "
            f"{sorted(FACTS - REQUIRED_FACTS)}"
        )
    entries = _compile_entries(_require(raw, "entries", file_name), ctx)
    facts = compile_template(facts_raw, ctx, "facts")
    return MessageMapping(**common, source=source, facts=facts, entries=entries)


@cache
def mappings(direction: Direction) -> dict[str, MessageMapping]:
    """Every mapping of one direction, by message name (the X-Road service code)."""
    found: dict[str, MessageMapping] = {}
    suffix = f".{direction}.json"
    for entry in sorted(_mapping_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(suffix):
            mapping = load_mapping(entry.name)
            if mapping.message in found:
                raise MappingError(f"two {direction} mappings for {mapping.message}")
            found[mapping.message] = mapping
    return found
