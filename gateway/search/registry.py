"""Search-parameter definitions, loaded from data (schemas/fhir/search-parameters.json).

The file holds the R4 SearchParameter resources (search.html §3.1.1, searchparameter-registry)
for the stored types. Each definition's multi-type FHIRPath expression is split into the
part that applies to one resource type.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

from gateway.fhir.resource_types import STORED_TYPES
from schemas import load_json

# Result parameters and special parameters handled by the search engine itself
# (search.html §3.1.1.5 and §3.1.1.4.x).
CONTROL_PARAMETERS: frozenset[str] = frozenset(
    {
        "_sort",
        "_count",
        "_include",
        "_revinclude",
        "_summary",
        "_total",
        "_elements",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
        "_cursor",
    }
)


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter as it applies to one resource type."""

    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    resource_type: str
    expression: str
    targets: tuple[str, ...] = ()
    url: str = ""
    description: str = ""
    stored_in: tuple[str, ...] = ()
    """String parameters: the parameters whose index rows hold this one's values, its
    own code first unless another parameter with the same expression stores them."""
    parts_stored_elsewhere: frozenset[str] = frozenset()
    """String parameters on HumanName or Address: the parts whose values are indexed
    under another parameter of ``stored_in`` (e.g. ``Patient.address.city`` under
    ``address-city``), so they are not indexed twice."""


STRING_PARTS: tuple[str, ...] = (
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
)
"""The parts of a HumanName and an Address a string search matches (R4 search.html#string
and the ``address`` parameters' definitions): family, given, prefix, suffix and text;
line, city, district, state, postalCode, country and text."""


def _expression_for(expression: str, base: str, resource_type: str) -> str:
    if base == "Resource":
        return expression.replace("Resource.", f"{resource_type}.")
    parts = [p.strip() for p in expression.split(" | ")]
    mine = [p for p in parts if p.lstrip("(").startswith(f"{resource_type}.")]
    return " | ".join(mine)


@cache
def _all_params() -> dict[str, dict[str, SearchParam]]:
    bundle = load_json("fhir/search-parameters.json")
    by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in STORED_TYPES}
    for entry in bundle["entry"]:
        definition = entry["resource"]
        for base in definition["base"]:
            types = STORED_TYPES if base == "Resource" else (base,)
            for resource_type in types:
                if resource_type not in by_type:
                    continue
                expression = _expression_for(definition["expression"], base, resource_type)
                if not expression:
                    continue
                by_type[resource_type][definition["code"]] = SearchParam(
                    code=definition["code"],
                    type=definition["type"],
                    resource_type=resource_type,
                    expression=expression,
                    targets=tuple(definition.get("target", ())),
                    url=definition.get("url", ""),
                    description=definition.get("description", ""),
                )
    return {t: _share_string_rows(params) for t, params in by_type.items()}


def _share_string_rows(params: dict[str, SearchParam]) -> dict[str, SearchParam]:
    """Decides where each string parameter's values are indexed, so that none is
    written twice for one resource:

    - parameters with the same expression (Patient ``name`` and ``phonetic``) share the
      rows of the first of them by code;
    - a parameter on HumanName or Address leaves a part to the parameter whose
      expression is exactly that part (``address`` leaves ``city`` to ``address-city``,
      ``name`` leaves ``family`` to ``family``).

    A search on a parameter then matches the rows of every code in its ``stored_in``.
    """
    owner_of: dict[str, str] = {}
    for code in sorted(params):
        if params[code].type == "string":
            owner_of.setdefault(params[code].expression, code)
    shared = dict(params)
    for code, param in params.items():
        if param.type != "string":
            continue
        owner = owner_of[param.expression]
        parts = {
            part: owner_of[f"{param.expression}.{part}"]
            for part in STRING_PARTS
            if f"{param.expression}.{part}" in owner_of
        }
        stored_in = (owner, *sorted(set(parts.values()) - {owner}))
        shared[code] = replace(param, stored_in=stored_in, parts_stored_elsewhere=frozenset(parts))
    return shared


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """Search parameters (by code) that apply to ``resource_type``; empty if unknown."""
    return _all_params().get(resource_type, {})


def get_param(resource_type: str, code: str) -> SearchParam | None:
    return _all_params().get(resource_type, {}).get(code)
