"""Micro-benchmark of search-index extraction (search.html §3.1.1.4).

Prints µs per ``extract_index_rows`` call for a ServiceRequest and a Patient: with the
compiled FHIRPath subset (value caches warm, as for repeated values, and cold, as for
values never seen before) and with fhirpathpy evaluating every expression.

    .venv/bin/python bench/bench_extract.py
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from functools import partial
from typing import Any
from unittest import mock

from gateway.search import extract
from gateway.search.fhirpath import fhirpathpy_evaluator

SERVICE_REQUEST: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "id": "sr-1",
    "meta": {
        "lastUpdated": "2024-05-02T08:15:00Z",
        "profile": ["https://example.fi/fhir/StructureDefinition/silta-servicerequest"],
    },
    "identifier": [{"system": "urn:oid:1.2.246.10.1234567.10.1", "value": "LÄH-2024-0001"}],
    "status": "active",
    "intent": "order",
    "priority": "routine",
    "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "410606002"}]}],
    "code": {
        "coding": [{"system": "http://snomed.info/sct", "code": "385763009", "display": "Hoito"}],
        "text": "Kotihoidon palvelutarpeen arviointi",
    },
    "subject": {"reference": "Patient/pat-1", "display": "Matti Meikäläinen"},
    "occurrencePeriod": {"start": "2024-05-10", "end": "2024-06-30"},
    "authoredOn": "2024-05-02T10:15:00+03:00",
    "requester": {"reference": "PractitionerRole/pr-1"},
    "performer": [{"reference": "Organization/org-hva"}],
    "reasonCode": [{"text": "Kaatumisriski"}],
}

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-1",
    "meta": {"lastUpdated": "2024-05-02T08:15:00Z"},
    "identifier": [{"system": "urn:oid:1.2.246.21", "value": "010190-900R"}],
    "active": True,
    "name": [{"use": "official", "family": "Meikäläinen", "given": ["Matti", "Juhani"]}],
    "telecom": [
        {"system": "phone", "value": "+358401234567", "use": "mobile"},
        {"system": "email", "value": "matti@example.fi"},
    ],
    "gender": "male",
    "birthDate": "1990-01-01",
    "address": [
        {"line": ["Kauppakatu 1 A 2"], "city": "Äänekoski", "postalCode": "44100", "country": "FI"}
    ],
    "managingOrganization": {"reference": "Organization/org-hva"},
}


def _per_call(func: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=5)) / number * 1e6


def _cold(resource: dict[str, Any]) -> None:
    extract._normalize.cache_clear()
    extract._date_range.cache_clear()
    extract.extract_index_rows(resource)


def main() -> None:
    for name, resource in (("ServiceRequest", SERVICE_REQUEST), ("Patient", PATIENT)):
        extract._plan.cache_clear()
        warm = _per_call(partial(extract.extract_index_rows, resource), 2000)
        cold = _per_call(partial(_cold, resource), 2000)
        extract._plan.cache_clear()
        with mock.patch.object(extract, "compile_path", fhirpathpy_evaluator):
            slow = _per_call(partial(extract.extract_index_rows, resource), 100)
        extract._plan.cache_clear()
        print(
            f"{name:15s} compiled {warm:7.1f} µs (cold caches {cold:7.1f} µs)"
            f"   fhirpathpy-only {slow:8.1f} µs"
        )


if __name__ == "__main__":
    main()
