"""Search-index rows extracted from resources (search.html §3.1.1.4)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.search import extract
from gateway.search.extract import DATE_MAX, DATE_MIN, INDEXED_TABLE_KEYS, extract_index_rows
from gateway.search.registry import SearchParam
from gateway.search.values import to_micros
from gateway.store.schema import INDEX_TABLES

HETU_SYSTEM = "urn:oid:1.2.246.21"
SCT = "http://snomed.info/sct"
BASE = "https://fhir.silta.example.fi/fhir"
NOTICE = "https://silta.example.fi/fhir/CodeSystem/kela-notice-type"

Rows = dict[str, list[dict[str, Any]]]


def _us(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    offset_hours: int = 0,
) -> int:
    """Epoch microseconds of a wall-clock time at a UTC offset."""
    zone = timezone(timedelta(hours=offset_hours))
    return to_micros(datetime(year, month, day, hour, minute, second, tzinfo=zone))


def _rows(found: Rows, table: str, param: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of one table (and one parameter) as tuples in schema column order, sorted."""
    columns = extract.INDEX_COLUMNS[table]
    return sorted(
        (tuple(row[c] for c in columns) for row in found[table] if param in (None, row["param"])),
        key=repr,
    )


def _token(
    p: str, system: str | None, code: str | None, text: str | None = None
) -> tuple[Any, ...]:
    return (p, system, code, text)


def _string(p: str, exact: str, norm: str | None = None) -> tuple[Any, ...]:
    return (p, norm if norm is not None else exact.lower(), exact)


def _ref(p: str, rtype: str | None, rid: str | None, url: str | None = None) -> tuple[Any, ...]:
    return (p, rtype, rid, url)


def _sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=repr)


# --------------------------------------------------------------------------- Patient

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-aijala",
    "meta": {"lastUpdated": "2025-02-01T09:00:00Z", "versionId": "1"},
    "identifier": [
        {"system": HETU_SYSTEM, "value": "010190-900P", "type": {"text": "Henkilötunnus"}}
    ],
    "active": True,
    "name": [{"use": "official", "family": "Äijälä", "given": ["Aino", "Kyllikki"]}],
    "telecom": [
        {"system": "phone", "value": "+358 40 123 4567", "use": "mobile"},
        {"system": "email", "value": "aino@example.fi"},
    ],
    "gender": "female",
    "birthDate": "1990",
    "deceasedDateTime": "2024-11-05T14:30:00+02:00",
    "address": [
        {
            "use": "home",
            "line": ["Kauppakatu 1"],
            "city": "Äänekoski",
            "postalCode": "44100",
            "country": "FI",
        }
    ],
    "communication": [
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fi", "display": "Suomi"}]}}
    ],
    "generalPractitioner": [{"reference": f"{BASE}/Practitioner/prac-1/_history/3"}],
    "managingOrganization": {"reference": "Organization/varha"},
}


def test_patient_rows_are_exact() -> None:
    found = extract_index_rows(PATIENT)

    assert _rows(found, "token") == _sorted(
        [
            _token("identifier", HETU_SYSTEM, "010190-900P", "henkilotunnus"),
            _token("active", None, "true"),
            _token("telecom", "phone", "+358 40 123 4567"),
            _token("telecom", "email", "aino@example.fi"),
            _token("phone", "phone", "+358 40 123 4567"),
            _token("email", "email", "aino@example.fi"),
            _token("gender", None, "female"),
            _token("address-use", None, "home"),
            _token("deceased", None, "true"),
            _token("language", "urn:ietf:bcp:47", "fi", "suomi"),
        ]
    )
    # Each value once: ``address`` keeps only the line (city, postal code and country
    # are stored under their own parameters); ``name`` and ``phonetic`` have no rows of
    # their own, a search on them matches those of ``family`` and ``given``.
    assert _rows(found, "string") == _sorted(
        [
            ("address", "kauppakatu 1", "Kauppakatu 1"),
            ("address-city", "aanekoski", "Äänekoski"),
            ("address-country", "fi", "FI"),
            ("address-postalcode", "44100", "44100"),
            ("family", "aijala", "Äijälä"),
            ("given", "aino", "Aino"),
            ("given", "kyllikki", "Kyllikki"),
        ]
    )
    assert _rows(found, "date") == _sorted(
        [
            ("birthdate", _us(1990, 1, 1), _us(1991, 1, 1)),
            ("death-date", _us(2024, 11, 5, 12, 30), _us(2024, 11, 5, 12, 30, 1)),
        ]
    )
    assert _rows(found, "reference") == _sorted(
        [
            _ref(
                "general-practitioner",
                "Practitioner",
                "prac-1",
                f"{BASE}/Practitioner/prac-1/_history/3",
            ),
            _ref("organization", "Organization", "varha"),
        ]
    )
    assert found["number"] == []
    assert found["uri"] == []


def test_resource_columns_are_not_indexed_here() -> None:
    found = extract_index_rows(PATIENT)
    params = {row["param"] for rows in found.values() for row in rows}
    assert "_id" not in params
    assert "_lastUpdated" not in params


def test_row_keys_are_the_table_columns() -> None:
    found = extract_index_rows(PATIENT)
    assert tuple(found) == INDEXED_TABLE_KEYS == tuple(INDEX_TABLES)
    for key, rows in found.items():
        columns = [c.name for c in INDEX_TABLES[key].columns]
        expected = [c for c in columns if c not in ("resource_pk", "res_type")]
        for row in rows:
            assert list(row) == expected


def test_patient_without_deceased_is_indexed_as_not_deceased() -> None:
    found = extract_index_rows({"resourceType": "Patient", "id": "p"})
    assert _rows(found, "token") == [_token("deceased", None, "false")]
    assert all(found[k] == [] for k in INDEXED_TABLE_KEYS if k != "token")


def test_patient_deceased_boolean() -> None:
    found = extract_index_rows({"resourceType": "Patient", "deceasedBoolean": True})
    assert _rows(found, "token", "deceased") == [_token("deceased", None, "true")]
    assert _rows(found, "date", "death-date") == []


# --------------------------------------------------------------------------- ServiceRequest

SERVICE_REQUEST: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "id": "sr-1",
    "meta": {
        "profile": ["https://silta.example.fi/fhir/StructureDefinition/huoli|1.0"],
        "tag": [{"system": "https://silta.example.fi/tags", "code": "kela"}],
    },
    "identifier": [
        {"system": "https://kela.example.fi/notification-id", "value": "KELA-1"},
        {"system": "https://kela.example.fi/notification-id", "value": "KELA-1"},
    ],
    "instantiatesCanonical": [f"{BASE}/PlanDefinition/shl35|2.1"],
    "instantiatesUri": ["https://finlex.fi/laki#35"],
    "basedOn": [{"reference": "http://example.org/legacy/requests/77"}],
    "replaces": [{"reference": "ServiceRequest/sr-0/_history/2"}],
    "requisition": {"system": "https://kela.example.fi/requisition", "value": "REQ-1"},
    "status": "active",
    "intent": "order",
    "priority": "urgent",
    "category": [
        {"coding": [{"system": SCT, "code": "410606002", "display": "Social service procedure"}]}
    ],
    "code": {
        "coding": [
            {"system": NOTICE, "code": "social-work-need", "display": "Ilmoitus"},
            {"system": SCT, "code": "1"},
        ],
        "text": "Huoli-ilmoitus  ÄÄNEKOSKI",
    },
    "orderDetail": [{"text": "Kiireellinen"}],
    "subject": {"reference": "Patient/pat-aijala", "display": "Aino Äijälä"},
    "occurrencePeriod": {"start": "2025-01-14"},
    "authoredOn": "2025-01-14T10:32:00+02:00",
    "requester": {"reference": "#req"},
    "contained": [{"resourceType": "PractitionerRole", "id": "req"}],
    "performer": [
        {"reference": "https://fhir.pirha.example.fi/r4/Organization/pirha/_history/2"},
        {"identifier": {"system": "urn:oid:1.2.246.10.1", "value": "x"}},
    ],
}


def test_service_request_rows_are_exact() -> None:
    found = extract_index_rows(SERVICE_REQUEST)
    code_text = "huoli-ilmoitus aanekoski"
    assert _rows(found, "token") == _sorted(
        [
            _token("_tag", "https://silta.example.fi/tags", "kela"),
            _token("identifier", "https://kela.example.fi/notification-id", "KELA-1"),
            _token("requisition", "https://kela.example.fi/requisition", "REQ-1"),
            _token("status", None, "active"),
            _token("intent", None, "order"),
            _token("priority", None, "urgent"),
            _token("category", SCT, "410606002", "social service procedure"),
            _token("code", NOTICE, "social-work-need", code_text),
            _token("code", SCT, "1", code_text),
            _token("order-detail", None, "Kiireellinen"),
        ]
    )
    assert _rows(found, "uri") == _sorted(
        [
            ("_profile", "https://silta.example.fi/fhir/StructureDefinition/huoli|1.0"),
            ("instantiates-uri", "https://finlex.fi/laki#35"),
        ]
    )
    assert _rows(found, "reference") == _sorted(
        [
            _ref("instantiates-canonical", None, None, f"{BASE}/PlanDefinition/shl35"),
            _ref("based-on", None, None, "http://example.org/legacy/requests/77"),
            _ref("replaces", "ServiceRequest", "sr-0"),
            _ref("subject", "Patient", "pat-aijala"),
            _ref("patient", "Patient", "pat-aijala"),
            _ref(
                "performer",
                "Organization",
                "pirha",
                "https://fhir.pirha.example.fi/r4/Organization/pirha/_history/2",
            ),
        ]
    )
    assert _rows(found, "date") == _sorted(
        [
            ("occurrence", _us(2025, 1, 14), DATE_MAX),
            ("authored", _us(2025, 1, 14, 8, 32), _us(2025, 1, 14, 8, 32, 1)),
        ]
    )
    assert found["string"] == []
    assert found["number"] == []


def test_patient_reference_parameter_needs_a_patient_target() -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Group/perhe-7"},
    }
    found = extract_index_rows(resource)
    assert _rows(found, "reference") == [_ref("subject", "Group", "perhe-7")]


def test_occurrence_timing_and_bad_dates() -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "authoredOn": "14.1.2025",
        "occurrenceTiming": {
            "event": ["2025-04-01T08:00:00Z", "huomenna"],
            "repeat": {"boundsPeriod": {"end": "2025-06"}},
        },
    }
    found = extract_index_rows(resource)
    assert _rows(found, "date") == _sorted(
        [
            ("occurrence", _us(2025, 4, 1, 8), _us(2025, 4, 1, 8, 0, 1)),
            ("occurrence", DATE_MIN, _us(2025, 7, 1)),
        ]
    )


def test_occurrence_date_time_with_fraction() -> None:
    resource = {"resourceType": "ServiceRequest", "occurrenceDateTime": "2025-03-01T12:00:00.25Z"}
    found = extract_index_rows(resource)
    low = _us(2025, 3, 1, 12, 0, 0) + 250_000
    assert _rows(found, "date") == [("occurrence", low, low + 10_000)]


# --------------------------------------------------------------------------- Task, Goal, CarePlan


def test_task_references_and_period() -> None:
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": "Patient/pat-aijala"},
        "focus": {"reference": "ServiceRequest/sr-1/_history/1"},
        "owner": {"reference": f"{BASE}/Organization/pirha"},
        "requester": {"reference": "Organization/kela"},
        "executionPeriod": {"start": "2025-01-15T08:00:00+02:00", "end": "2025-01-20"},
        "businessStatus": {"text": "Odottaa  käsittelyä"},
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]
        },
    }
    found = extract_index_rows(task)
    assert _rows(found, "reference") == _sorted(
        [
            _ref("subject", "Patient", "pat-aijala"),
            _ref("patient", "Patient", "pat-aijala"),
            _ref("focus", "ServiceRequest", "sr-1"),
            _ref("owner", "Organization", "pirha", f"{BASE}/Organization/pirha"),
            _ref("requester", "Organization", "kela"),
        ]
    )
    assert _rows(found, "date") == [
        ("period", _us(2025, 1, 15, 8, offset_hours=2), _us(2025, 1, 21)),
    ]
    assert _rows(found, "token") == _sorted(
        [
            _token("status", None, "requested"),
            _token("intent", None, "order"),
            _token("business-status", None, None, "odottaa kasittelya"),
            _token("code", "http://hl7.org/fhir/CodeSystem/task-code", "fulfill"),
        ]
    )


def test_goal_partial_dates() -> None:
    goal = {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "subject": {"reference": "Patient/pat-aijala"},
        "startDate": "2025-02",
        "target": [{"dueDate": "2025-06-30"}, {"dueDuration": {"value": 90, "unit": "d"}}],
        "achievementStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/goal-achievement",
                    "code": "in-progress",
                    "display": "In Progress",
                }
            ]
        },
    }
    found = extract_index_rows(goal)
    assert _rows(found, "date") == _sorted(
        [
            ("start-date", _us(2025, 2, 1), _us(2025, 3, 1)),
            ("target-date", _us(2025, 6, 30), _us(2025, 7, 1)),
        ]
    )
    assert _rows(found, "token", "achievement-status") == [
        _token(
            "achievement-status",
            "http://terminology.hl7.org/CodeSystem/goal-achievement",
            "in-progress",
            "in progress",
        )
    ]


def test_care_plan_activity_dates_from_timing_and_period() -> None:
    care_plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/pat-aijala"},
        "period": {"end": "2025-12-31"},
        "activity": [
            {
                "detail": {
                    "status": "scheduled",
                    "scheduledTiming": {
                        "event": ["2025-02-01T10:00:00+02:00"],
                        "repeat": {"boundsPeriod": {"start": "2025-02-01"}},
                    },
                }
            },
            {"detail": {"status": "not-started", "scheduledPeriod": {"start": "2025-03"}}},
            {"detail": {"status": "not-started", "scheduledString": "keväällä"}},
        ],
    }
    found = extract_index_rows(care_plan)
    assert _rows(found, "date") == _sorted(
        [
            ("date", DATE_MIN, _us(2026, 1, 1)),
            ("activity-date", _us(2025, 2, 1, 8), _us(2025, 2, 1, 8, 0, 1)),
            ("activity-date", _us(2025, 2, 1), DATE_MAX),
            ("activity-date", _us(2025, 3, 1), DATE_MAX),
        ]
    )


def test_consent_references_and_tokens() -> None:
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}], "text": "Tietosuoja"},
        "category": [{"text": "Suostumus"}],
        "patient": {"reference": "Patient/pat-aijala"},
        "sourceReference": {"reference": "DocumentReference/doc-1"},
        "provision": {
            "period": {"start": "2025-01-10", "end": "2026-01-10"},
            "actor": [{"role": {"text": "x"}, "reference": {"reference": "Organization/kela"}}],
            "data": [{"meaning": "related", "reference": {"reference": "ServiceRequest/sr-1"}}],
        },
    }
    found = extract_index_rows(consent)
    assert _rows(found, "reference") == _sorted(
        [
            _ref("patient", "Patient", "pat-aijala"),
            _ref("source-reference", "DocumentReference", "doc-1"),
            _ref("actor", "Organization", "kela"),
            _ref("data", "ServiceRequest", "sr-1"),
        ]
    )
    assert _rows(found, "token") == _sorted(
        [
            _token("status", None, "active"),
            _token("scope", None, "patient-privacy", "tietosuoja"),
            _token("category", None, None, "suostumus"),
        ]
    )
    assert _rows(found, "date") == [("period", _us(2025, 1, 10), _us(2026, 1, 11))]


def test_organization_name_and_alias_and_identifiers() -> None:
    organization = {
        "resourceType": "Organization",
        "identifier": [{"system": "urn:oid:1.2.246.517.1.1", "value": "3249416-4"}],
        "name": "Varsinais-Suomen hyvinvointialue",
        "alias": ["Varha", "Egentliga Finlands välfärdsområde"],
    }
    found = extract_index_rows(organization)
    names = [
        _string("name", "Varsinais-Suomen hyvinvointialue"),
        _string("name", "Varha"),
        _string("name", "Egentliga Finlands välfärdsområde", "egentliga finlands valfardsomrade"),
    ]
    assert _rows(found, "string") == _sorted(
        [*names, _string("phonetic", "Varsinais-Suomen hyvinvointialue")]
    )
    assert _rows(found, "token") == [_token("identifier", "urn:oid:1.2.246.517.1.1", "3249416-4")]


def test_subscription_contact_point_and_uri() -> None:
    subscription = {
        "resourceType": "Subscription",
        "status": "active",
        "contact": [{"system": "email", "value": "integraatiot@kela.fi"}],
        "criteria": "Task?owner=Organization/kela",
        "channel": {"type": "rest-hook", "endpoint": "https://fhir.kela.example.fi/notify"},
    }
    found = extract_index_rows(subscription)
    assert _rows(found, "token") == _sorted(
        [
            _token("status", None, "active"),
            _token("contact", "email", "integraatiot@kela.fi"),
            _token("type", None, "rest-hook"),
        ]
    )
    assert _rows(found, "uri") == [("url", "https://fhir.kela.example.fi/notify")]
    assert _rows(found, "string") == [
        ("criteria", "task?owner=organization/kela", "Task?owner=Organization/kela")
    ]


def test_bundle_entry_resource_is_not_a_reference() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": "2025-01-14T10:32:00Z",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}],
    }
    found = extract_index_rows(bundle)
    assert found["reference"] == []
    assert _rows(found, "token") == [_token("type", None, "collection")]
    assert _rows(found, "date") == [
        ("timestamp", _us(2025, 1, 14, 10, 32), _us(2025, 1, 14, 10, 32, 1))
    ]


def test_long_codes_are_truncated_and_blank_values_skipped() -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "s" * 300, "value": "v" * 300}, {"value": ""}, {}],
        "instantiatesUri": ["https://example.fi/" + "x" * 600, ""],
    }
    found = extract_index_rows(resource)
    assert _rows(found, "token") == [_token("identifier", "s" * 256, "v" * 256)]
    assert _rows(found, "uri") == [("instantiates-uri", ("https://example.fi/" + "x" * 600)[:512])]


def test_unknown_resource_type_gives_no_rows() -> None:
    found = extract_index_rows({"resourceType": "Observation", "status": "final"})
    assert found == {key: [] for key in INDEXED_TABLE_KEYS}


# --------------------------------------------------------------------------- number, quantity


@pytest.fixture
def numeric_params(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Number and quantity parameters (R4 has none on the stored types) on ServiceRequest."""
    params = {
        "quantity": SearchParam(
            "quantity", "quantity", "ServiceRequest", "ServiceRequest.quantity"
        ),
        "money": SearchParam(
            "money", "quantity", "ServiceRequest", "ServiceRequest.extension.value.ofType(Money)"
        ),
        "count": SearchParam(
            "count", "number", "ServiceRequest", "ServiceRequest.extension.value.ofType(integer)"
        ),
        "ratio": SearchParam(
            "ratio", "number", "ServiceRequest", "ServiceRequest.extension.value.ofType(decimal)"
        ),
    }
    monkeypatch.setattr(extract, "params_for", lambda resource_type: params)
    extract._plan.cache_clear()
    yield
    extract._plan.cache_clear()


@pytest.mark.usefixtures("numeric_params")
def test_quantity_money_and_number_rows() -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "quantityQuantity": {
            "value": 2.5,
            "unit": "h",
            "system": "http://unitsofmeasure.org",
            "code": "h",
        },
        "extension": [
            {"url": "https://example.fi/cost", "valueMoney": {"value": 1500, "currency": "EUR"}},
            {"url": "https://example.fi/count", "valueInteger": 3},
            {"url": "https://example.fi/ratio", "valueDecimal": 0.25},
            {"url": "https://example.fi/none", "valueString": "x"},
        ],
    }
    found = extract_index_rows(resource)
    assert _rows(found, "number") == _sorted(
        [
            ("quantity", 2.5, 2.45, 2.55, "http://unitsofmeasure.org", "h"),
            ("money", 1500.0, 1499.5, 1500.5, None, "EUR"),
            ("count", 3.0, 2.5, 3.5, None, None),
            ("ratio", 0.25, 0.245, 0.255, None, None),
        ]
    )
    for row in found["number"]:
        assert row["low"] < row["value"] < row["high"]


def test_dates_match_values_module() -> None:
    found = extract_index_rows({"resourceType": "Patient", "birthDate": "1990-01-01"})
    day = datetime(1990, 1, 1, tzinfo=UTC)
    assert _rows(found, "date") == [
        ("birthdate", to_micros(day), to_micros(day + timedelta(days=1)))
    ]
