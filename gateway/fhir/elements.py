"""Subsetting of resources: ``_summary`` and ``_elements`` (R4 search.html §3.1.1.5.8-9).

Summary elements are data (schemas/fhir/summary-elements.json, the isSummary flags of
the R4 StructureDefinitions). A subsetted resource carries the SUBSETTED tag
(R4 resource.html §2.36.0.4 "Tags").
"""

from __future__ import annotations

from typing import Any

from schemas import load_json

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


def _element_names(resource: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in resource.items():
        name = key[1:] if key.startswith("_") else key
        if (
            key in _ALWAYS
            or name in wanted
            or any(w.endswith("[x]") and name.startswith(w[:-3]) for w in wanted)
        ):
            kept[key] = value
    return kept


def _mark_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    resource["meta"] = meta
    return resource


def summary_elements(resource_type: str) -> set[str]:
    table: dict[str, list[str]] = load_json("fhir/summary-elements.json")
    return set(table.get(resource_type, ()))


def apply_summary(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """``_summary`` = true | text | data | false (count is handled by the search)."""
    if mode in ("false", ""):
        return resource
    resource_type = resource.get("resourceType", "")
    if mode == "true":
        subset = _element_names(resource, summary_elements(resource_type))
    elif mode == "text":
        wanted = {"text"} | {"id", "meta"}
        subset = _element_names(resource, wanted)
    elif mode == "data":
        subset = {k: v for k, v in resource.items() if k != "text"}
    else:
        return resource
    return _mark_subsetted(subset)


def apply_elements(
    resource: dict[str, Any], elements: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """``_elements``: only the named top-level elements plus mandatory ones."""
    return _mark_subsetted(_element_names(resource, set(elements)))
