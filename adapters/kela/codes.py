"""Code tables of the Kela mappings (``mappings/kela/codes/*.json``) and the
municipality table they share with the admin register
(``mappings/municipalities_wellbeing_areas.csv``).

Each table is a FHIR CodeSystem of the project (R4 codesystem.html): ``url`` is its
system, each concept has a code, displays in Finnish, Swedish and English, an optional
parent (a code of another table, e.g. a life-situation field) and ``map``, the values
it maps to (ConceptMap-like: e.g. ``map.priority`` of an urgency code).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

from adapters.kela.errors import MappingError

DISPLAY_LANGUAGES = ("fi", "sv", "en")
CODE_SYSTEM_VERSION = "0.1.0"


@dataclass(frozen=True, slots=True)
class Concept:
    code: str
    display: Mapping[str, str]
    parent: str | None
    map: Mapping[str, tuple[str, ...]]

    def maps_to(self, key: str, value: str) -> bool:
        return value in self.map.get(key, ())


@dataclass(frozen=True, slots=True)
class CodeTable:
    name: str
    url: str
    title: str
    description: str
    external: bool
    parent_table: str | None
    concepts: tuple[Concept, ...]
    by_code: Mapping[str, Concept]

    def concept(self, code: str) -> Concept | None:
        return self.by_code.get(code)

    def find(self, key: str, value: str) -> Concept | None:
        """The concept whose ``map[key]`` is or lists ``value``."""
        for concept in self.concepts:
            if concept.maps_to(key, value):
                return concept
        return None

    def coding(self, concept: Concept, language: str = "fi") -> dict[str, str]:
        """A FHIR Coding (R4 datatypes.html#Coding) with the display in ``language``."""
        return {
            "system": self.url,
            "code": concept.code,
            "display": concept.display.get(language) or concept.display["fi"],
        }


def _codes_dir() -> Any:
    return resources.files("mappings").joinpath("kela").joinpath("codes")


def _parse_table(name: str, raw: Any) -> CodeTable:
    try:
        concepts = tuple(
            Concept(
                code=str(item["code"]),
                display={lang: str(item["display"][lang]) for lang in DISPLAY_LANGUAGES},
                parent=item.get("parent"),
                map={
                    key: tuple(value) if isinstance(value, list) else (str(value),)
                    for key, value in item.get("map", {}).items()
                },
            )
            for item in raw["concept"]
        )
        table = CodeTable(
            name=str(raw["name"]),
            url=str(raw["url"]),
            title=str(raw["title"]),
            description=str(raw["description"]),
            external=bool(raw.get("external", False)),
            parent_table=raw.get("parentTable"),
            concepts=concepts,
            by_code={concept.code: concept for concept in concepts},
        )
    except (KeyError, TypeError) as exc:
        raise MappingError(f"code table {name}: missing or malformed {exc}") from exc
    if table.name != name:
        raise MappingError(f"code table file {name}.json names itself {table.name!r}")
    if len(table.by_code) != len(concepts):
        raise MappingError(f"code table {name} repeats a code")
    if any(c.parent is not None for c in concepts) and table.parent_table is None:
        raise MappingError(f"code table {name} has parents but no parentTable")
    return table


@cache
def code_tables() -> dict[str, CodeTable]:
    """Every code table, by name (the file name without ``.json``)."""
    tables: dict[str, CodeTable] = {}
    for entry in sorted(_codes_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            name = entry.name.removesuffix(".json")
            tables[name] = _parse_table(name, orjson.loads(entry.read_bytes()))
    for table in tables.values():
        if table.parent_table is None:
            continue
        parents = tables.get(table.parent_table)
        for concept in table.concepts:
            if parents is None or concept.parent not in parents.by_code:
                raise MappingError(
                    f"code table {table.name}: {concept.code} has parent {concept.parent!r}, "
                    f"which is not a code of {table.parent_table}"
                )
    return tables


def code_table(name: str) -> CodeTable:
    try:
        return code_tables()[name]
    except KeyError:
        raise MappingError(f"there is no code table {name!r}") from None


def code_system(table: CodeTable) -> dict[str, Any]:
    """The table as a FHIR CodeSystem resource (R4 codesystem.html), in the style of
    ``schemas/silta/``: Finnish display, Swedish and English as designations."""
    if table.external:
        raise ValueError(f"{table.name} lists codes of the external system {table.url}")
    identifier = table.url.rsplit("/", 1)[-1]
    concepts: list[dict[str, Any]] = []
    for concept in table.concepts:
        item: dict[str, Any] = {"code": concept.code, "display": concept.display["fi"]}
        item["designation"] = [
            {"language": lang, "value": concept.display[lang]} for lang in DISPLAY_LANGUAGES[1:]
        ]
        if concept.parent is not None and table.parent_table is not None:
            item["property"] = [{"code": table.parent_table, "valueCode": concept.parent}]
        concepts.append(item)
    resource: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "id": identifier,
        "url": table.url,
        "version": CODE_SYSTEM_VERSION,
        "name": "Silta" + "".join(part.capitalize() for part in identifier.split("-")),
        "title": table.title,
        "status": "draft",
        "experimental": False,
        "publisher": "Silta",
        "description": table.description,
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": concepts,
    }
    if table.parent_table is not None:
        parent_url = code_table(table.parent_table).url
        resource["property"] = [
            {
                "code": table.parent_table,
                "uri": parent_url,
                "description": f"The broader concept: a code of {parent_url}.",
                "type": "code",
            }
        ]
    return resource
