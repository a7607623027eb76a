"""The resource types this gateway stores, and FHIR's full list of type names.

Stored types are those of the Silta capability (see README); any other valid
FHIR type name gets 404 "not supported" rather than 400 (R4 http.html §3.1.0.4).
"""

from __future__ import annotations

from functools import cache

from schemas import load_json

STORED_TYPES: tuple[str, ...] = (
    "AuditEvent",
    "Bundle",
    "CarePlan",
    "CareTeam",
    "Communication",
    "Consent",
    "DocumentReference",
    "Endpoint",
    "Goal",
    "MeasureReport",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Provenance",
    "ServiceRequest",
    "Subscription",
    "Task",
)

_STORED = frozenset(STORED_TYPES)


def is_stored_type(name: str) -> bool:
    return name in _STORED


@cache
def all_fhir_type_names() -> frozenset[str]:
    """Every concrete resource type name of FHIR R4 (for reference syntax checks)."""
    names: list[str] = load_json("fhir/resource-types.json")
    return frozenset(names)
