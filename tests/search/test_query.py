"""Search execution on SQLite and PostgreSQL (R4 search.html §3.1.1)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import insert

from gateway.errors import InvalidSearch
from gateway.search import params as params_module
from gateway.search import query as query_module
from gateway.search.query import execute_search, find_matches
from gateway.search.registry import SearchParam, params_for
from gateway.store.repository import KeyedVisibility
from gateway.store.schema import INDEX_TABLES, sp_number
from tests.search.conftest import Store

HETU = "urn:oid:1.2.246.21"
SCT = "http://snomed.info/sct"
GENDER = "http://hl7.org/fhir/administrative-gender"


def patient(
    pid: str,
    *,
    family: str | None = None,
    given: str | None = None,
    hetu: str | None = None,
    birth: str | None = None,
    gender: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "id": pid, **extra}
    if family or given:
        name: dict[str, Any] = {}
        if family:
            name["family"] = family
        if given:
            name["given"] = [given]
        body["name"] = [name]
    if hetu:
        body["identifier"] = [{"system": HETU, "value": hetu}]
    if birth:
        body["birthDate"] = birth
    if gender:
        body["gender"] = gender
    return body


def service_request(sid: str, subject: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": sid,
        "status": extra.pop("status", "active"),
        "intent": "order",
        **extra,
    }
    if subject:
        body["subject"] = {"reference": subject}
    return body


def task(tid: str, focus: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Task",
        "id": tid,
        "status": extra.pop("status", "requested"),
        "intent": "order",
        **extra,
    }
    if focus:
        body["focus"] = {"reference": focus}
    return body


def ids(
    store: Store, resource_type: str, query: str | list[tuple[str, str]], **kwargs: Any
) -> list[str]:
    return store.ids(resource_type, query, **kwargs)


def same(store: Store, resource_type: str, query: str) -> set[str]:
    return set(store.ids(resource_type, query))


def assert_matches(store: Store, resource_type: str, cases: dict[str, list[str]]) -> None:
    """Each query (key) matches exactly its ids, in order, and counts them in its total."""
    for query, expected in cases.items():
        page = store.search(resource_type, query)
        assert [r.res_id for r in page.matches] == expected, query
        assert page.total == len(expected), query


# --------------------------------------------------------------------------- token


@pytest.fixture
def people(store: Store) -> Store:
    store.put_all(
        patient(
            "virtanen",
            family="Virtanen",
            given="Matti",
            hetu="010190-900P",
            gender="male",
            birth="1990-01-01",
            meta={"tag": [{"system": "http://silta.fi/tag", "code": "kela"}]},
        ),
        patient(
            "ohman",
            family="Öhman",
            given="Äänekoski",
            hetu="280255-9340",
            gender="female",
            birth="1955-02-28",
        ),
        patient("korhonen", family="Korhonen", given="Liisa", gender="female", birth="1990-06"),
        patient("anon"),
        {
            "resourceType": "Patient",
            "id": "other-system",
            "identifier": [{"system": "urn:other", "value": "010190-900P"}],
        },
        {"resourceType": "Patient", "id": "no-system", "identifier": [{"value": "010190-900P"}]},
    )
    return store


def test_token_code_forms(people: Store) -> None:
    assert same(people, "Patient", "identifier=010190-900P") == {
        "virtanen",
        "other-system",
        "no-system",
    }
    assert ids(people, "Patient", f"identifier={HETU}|010190-900P") == ["virtanen"]
    assert ids(people, "Patient", "identifier=|010190-900P") == ["no-system"]
    assert ids(people, "Patient", f"identifier={HETU}|") == ["virtanen", "ohman"]
    assert ids(people, "Patient", "gender=female,male") == ["virtanen", "ohman", "korhonen"]
    assert ids(people, "Patient", "gender=female&identifier=280255-9340") == ["ohman"]
    assert ids(people, "Patient", "_tag=http://silta.fi/tag|kela") == ["virtanen"]


def test_token_not_includes_resources_without_a_value(people: Store) -> None:
    assert ids(people, "Patient", "gender:not=female") == [
        "virtanen",
        "anon",
        "other-system",
        "no-system",
    ]
    assert ids(people, "Patient", "gender:not=female,male") == ["anon", "other-system", "no-system"]


def test_token_text_matches_normalized_text_by_prefix(store: Store) -> None:
    store.put_all(
        service_request("sr1", category=[{"text": "Kotihoito ja Ääniterapia"}]),
        service_request(
            "sr2", category=[{"coding": [{"system": SCT, "code": "1", "display": "Kuntoutus"}]}]
        ),
    )
    assert ids(store, "ServiceRequest", "category:text=kotihoito") == ["sr1"]
    assert ids(store, "ServiceRequest", "category:text=KUNTOU") == ["sr2"]
    assert ids(store, "ServiceRequest", "category:text=aaniterapia") == []


def test_id_and_id_lists(people: Store) -> None:
    assert ids(people, "Patient", "_id=ohman,anon,missing") == ["ohman", "anon"]
    assert ids(people, "Patient", "_id:not=ohman,anon") == [
        "virtanen",
        "korhonen",
        "other-system",
        "no-system",
    ]


def test_missing_for_each_type(people: Store) -> None:
    people.put(service_request("sr1", "Patient/virtanen"))
    assert ids(people, "Patient", "gender:missing=true") == ["anon", "other-system", "no-system"]
    assert ids(people, "Patient", "gender:missing=false") == ["virtanen", "ohman", "korhonen"]
    assert ids(people, "Patient", "family:missing=true") == ["anon", "other-system", "no-system"]
    assert ids(people, "Patient", "birthdate:missing=false") == ["virtanen", "ohman", "korhonen"]
    assert ids(people, "Patient", "_profile:missing=false") == []
    assert ids(people, "ServiceRequest", "subject:missing=false") == ["sr1"]
    assert ids(people, "ServiceRequest", "subject:missing=true") == []
    assert len(ids(people, "Patient", "gender:missing=true,false")) == 6
    assert ids(people, "Patient", "_id:missing=true") == []


# --------------------------------------------------------------------------- string


def test_string_is_case_and_accent_insensitive_prefix(people: Store) -> None:
    assert ids(people, "Patient", "family=öhm") == ["ohman"]
    assert ids(people, "Patient", "family=OHMAN") == ["ohman"]
    assert ids(people, "Patient", "given=aanekoski") == ["ohman"]
    assert ids(people, "Patient", "given=ÄÄNE") == ["ohman"]
    assert ids(people, "Patient", "name=virtanen,korhonen") == ["virtanen", "korhonen"]
    assert ids(people, "Patient", "name=matti&family=virt") == ["virtanen"]
    assert ids(people, "Patient", "family=hman") == []


def test_string_exact_and_contains(people: Store) -> None:
    assert ids(people, "Patient", "family:exact=Öhman") == ["ohman"]
    assert ids(people, "Patient", "family:exact=Ohman") == []
    assert ids(people, "Patient", "family:exact=öhman") == []
    assert ids(people, "Patient", "family:contains=HMA") == ["ohman"]
    assert ids(people, "Patient", "family:contains=nen") == ["virtanen", "korhonen"]


def test_parameters_sharing_string_rows_match_as_before(store: Store) -> None:
    """``name`` and ``phonetic`` match through the rows of ``family`` and ``given``,
    ``address`` through those of ``address-city`` and its siblings plus its own line
    rows (registry._share_string_rows); every modifier and sort sees the union."""
    home = {"line": ["Kauppakatu 1"], "city": "Äänekoski", "postalCode": "44100", "country": "FI"}
    store.put_all(
        patient("ohman", family="Öhman", given="Aino", address=[home]),
        patient("virtanen", family="Virtanen", given="Matti"),
        patient("titled", name=[{"text": "Dr. Eeva Lind", "prefix": ["Dr."]}]),
        patient("anon"),
    )
    for code in ("name", "phonetic"):
        assert ids(store, "Patient", f"{code}=öhm") == ["ohman"]
        assert ids(store, "Patient", f"{code}=aino,matti") == ["ohman", "virtanen"]
        assert ids(store, "Patient", f"{code}=dr") == ["titled"]
        assert ids(store, "Patient", f"{code}:exact=Matti") == ["virtanen"]
        assert ids(store, "Patient", f"{code}:contains=tane") == ["virtanen"]
        assert ids(store, "Patient", f"{code}:missing=true") == ["anon"]
    for value in ("kauppa", "aanekoski", "44100", "fi"):
        assert ids(store, "Patient", f"address={value}") == ["ohman"]
    assert ids(store, "Patient", "address:exact=Äänekoski") == ["ohman"]
    assert ids(store, "Patient", "address-city=kauppa") == []
    assert ids(store, "Patient", "address:missing=false") == ["ohman"]
    assert ids(store, "Patient", "_sort=name") == ["ohman", "titled", "virtanen", "anon"]
    assert ids(store, "Patient", "_sort=-phonetic") == ["virtanen", "ohman", "titled", "anon"]
    store.put(service_request("sr", "Patient/ohman"))
    assert ids(store, "ServiceRequest", "subject:Patient.name=aino") == ["sr"]


def test_rows_stored_for_every_sharing_parameter_still_match_once(store: Store) -> None:
    """Rows written before the parameters shared them (``name`` and ``phonetic`` rows
    beside ``family``'s) leave each match single."""
    pk = store.put(patient("ohman", family="Öhman", given="Aino"))
    with store.engine.begin() as conn:
        conn.execute(
            insert(INDEX_TABLES["string"]),
            [
                {
                    "resource_pk": pk,
                    "res_type": "Patient",
                    "param": code,
                    "value_norm": norm,
                    "value_exact": exact,
                }
                for code in ("name", "phonetic")
                for norm, exact in (("ohman", "Öhman"), ("aino", "Aino"))
            ],
        )
    assert ids(store, "Patient", "name=ohman") == ["ohman"]
    assert ids(store, "Patient", "phonetic=aino,ohman") == ["ohman"]
    assert store.search("Patient", "name=o&_total=accurate").total == 1


def test_like_wildcards_and_escapes_are_literal(store: Store) -> None:
    store.put_all(
        patient("pct", family="50% Oy"),
        patient("under", family="a_b"),
        patient("plain", family="axb"),
        patient("comma", family="Smith, Jr"),
    )
    assert ids(store, "Patient", "family=50%25") == []  # literal "%25", never a wildcard
    assert ids(store, "Patient", [("family", "50%")]) == ["pct"]
    assert ids(store, "Patient", [("family", "5%")]) == []
    assert ids(store, "Patient", [("family", "a_")]) == ["under"]
    assert ids(store, "Patient", [("family:contains", "_")]) == ["under"]
    assert ids(store, "Patient", [("family", r"smith\, j")]) == ["comma"]
    assert ids(store, "Patient", [("family:exact", r"Smith\, Jr")]) == ["comma"]
    assert ids(store, "Patient", [("family:exact", "Smith, Jr")]) == []


# --------------------------------------------------------------------------- reference


def test_reference_forms(store: Store) -> None:
    store.put_all(
        patient("p1"),
        service_request("sr-rel", "Patient/p1"),
        service_request("sr-abs", "https://other.fi/fhir/Patient/p1"),
        service_request("sr-urn", "urn:uuid:8c6b3c7e-5e1f-4c37-9f4f-1d2f5c8b9a10"),
        service_request("sr-group", "Group/p1"),
        service_request("sr-p2", "Patient/p2"),
    )
    assert ids(store, "ServiceRequest", "subject=Patient/p1") == ["sr-rel", "sr-abs"]
    assert ids(store, "ServiceRequest", "subject=p1") == ["sr-rel", "sr-abs", "sr-group"]
    assert ids(store, "ServiceRequest", "subject:Patient=p1") == ["sr-rel", "sr-abs"]
    assert ids(store, "ServiceRequest", "patient=p1") == ["sr-rel", "sr-abs"]
    assert ids(store, "ServiceRequest", "subject=https://other.fi/fhir/Patient/p1") == [
        "sr-rel",
        "sr-abs",
    ]
    assert ids(
        store, "ServiceRequest", "subject=urn:uuid:8c6b3c7e-5e1f-4c37-9f4f-1d2f5c8b9a10"
    ) == ["sr-urn"]
    assert ids(store, "ServiceRequest", "subject=Patient/p1,Patient/p2") == [
        "sr-rel",
        "sr-abs",
        "sr-p2",
    ]


def test_canonical_reference_ignores_version(store: Store) -> None:
    store.put(
        service_request("sr1", instantiatesCanonical=["http://pd.fi/PlanDefinition/kotihoito|2.0"])
    )
    assert ids(
        store, "ServiceRequest", "instantiates-canonical=http://pd.fi/PlanDefinition/kotihoito"
    ) == ["sr1"]
    assert ids(
        store, "ServiceRequest", "instantiates-canonical=http://pd.fi/PlanDefinition/kotihoito|2.0"
    ) == ["sr1"]


# --------------------------------------------------------------------------- chaining


@pytest.fixture
def referrals(people: Store) -> Store:
    people.put_all(
        service_request("sr-virtanen", "Patient/virtanen"),
        service_request("sr-ohman", "Patient/ohman", status="completed"),
        service_request("sr-korhonen", "Patient/korhonen"),
        service_request("sr-nobody", "Patient/unknown"),
        task("t-virtanen", "ServiceRequest/sr-virtanen"),
        task("t-ohman", "ServiceRequest/sr-ohman", status="completed"),
        task("t-korhonen-1", "ServiceRequest/sr-korhonen"),
        task("t-korhonen-2", "ServiceRequest/sr-korhonen"),
    )
    return people


def test_chain_by_identifier(referrals: Store) -> None:
    query = f"subject:Patient.identifier={HETU}|010190-900P"
    assert ids(referrals, "ServiceRequest", query) == ["sr-virtanen"]
    assert ids(referrals, "ServiceRequest", "subject:Patient.identifier=nope") == []


def test_chain_by_name_without_type_modifier(referrals: Store) -> None:
    assert ids(referrals, "ServiceRequest", "subject.name=öhman,KORHONEN") == [
        "sr-ohman",
        "sr-korhonen",
    ]
    assert ids(referrals, "ServiceRequest", "patient.gender=female") == ["sr-ohman", "sr-korhonen"]


def test_two_level_chain(referrals: Store) -> None:
    assert ids(referrals, "Task", "focus:ServiceRequest.subject:Patient.family=virtanen") == [
        "t-virtanen"
    ]


def test_chain_ignores_deleted_targets(referrals: Store) -> None:
    referrals.delete("Patient", "ohman")
    assert ids(referrals, "ServiceRequest", "subject.name=öhman") == []


def test_reverse_chain(referrals: Store) -> None:
    assert ids(referrals, "Patient", "_has:ServiceRequest:subject:status=completed") == ["ohman"]
    assert ids(referrals, "ServiceRequest", "_has:Task:focus:status=requested") == [
        "sr-virtanen",
        "sr-korhonen",
    ]
    assert ids(
        referrals, "Patient", "_has:ServiceRequest:subject:_has:Task:focus:status=completed"
    ) == ["ohman"]


# --------------------------------------------------------------------------- date


@pytest.fixture
def births(store: Store) -> Store:
    store.put_all(
        patient("y2012", birth="2012"),
        patient("m2013-02", birth="2013-02"),
        patient("d2013-03-13", birth="2013-03-13"),
        patient("d2013-03-14", birth="2013-03-14"),
        patient("d2013-03-15", birth="2013-03-15"),
        patient("y2013", birth="2013"),
        patient("y2014", birth="2014"),
    )
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("birthdate=2013", {"m2013-02", "d2013-03-13", "d2013-03-14", "d2013-03-15", "y2013"}),
        ("birthdate=eq2013-03", {"d2013-03-13", "d2013-03-14", "d2013-03-15"}),
        ("birthdate=2013-03-14", {"d2013-03-14"}),
        ("birthdate=2013-03-14T10:00:00Z", set()),
        (
            "birthdate=ne2013-03-14",
            {"y2012", "m2013-02", "d2013-03-13", "d2013-03-15", "y2013", "y2014"},
        ),
        ("birthdate=gt2013-03-14", {"d2013-03-15", "y2013", "y2014"}),
        ("birthdate=ge2013-03-14", {"d2013-03-14", "d2013-03-15", "y2013", "y2014"}),
        ("birthdate=lt2013-03-14", {"y2012", "m2013-02", "d2013-03-13", "y2013"}),
        ("birthdate=le2013-03-14", {"y2012", "m2013-02", "d2013-03-13", "d2013-03-14", "y2013"}),
        ("birthdate=sa2013-03-14", {"d2013-03-15", "y2014"}),
        ("birthdate=eb2013-03-14", {"y2012", "m2013-02", "d2013-03-13"}),
        ("birthdate=gt2013", {"y2014"}),
        ("birthdate=lt2013-02", {"y2012", "y2013"}),
        ("birthdate=ge2013-03-14&birthdate=le2013-03-15", {"d2013-03-14", "d2013-03-15", "y2013"}),
        ("birthdate=2012,2014", {"y2012", "y2014"}),
    ],
)
def test_date_prefixes(births: Store, query: str, expected: set[str]) -> None:
    assert same(births, "Patient", query) == expected


def test_date_second_precision_and_time_zones(store: Store) -> None:
    store.put_all(
        task("t1", authoredOn="2013-03-14T10:00:00+02:00"),
        task("t2", authoredOn="2013-03-14T10:00:01Z"),
        task("t3", authoredOn="2013-03-14"),
    )
    assert ids(store, "Task", "authored-on=2013-03-14T08:00:00Z") == ["t1"]
    assert ids(store, "Task", "authored-on=2013-03-14T10:00:00+02:00") == ["t1"]
    assert ids(store, "Task", "authored-on=2013-03-14T10:00Z") == ["t2"]
    assert ids(store, "Task", "authored-on=2013-03-14") == ["t1", "t2", "t3"]
    assert ids(store, "Task", "authored-on=gt2013-03-14T10:00:00Z") == ["t2", "t3"]
    assert ids(store, "Task", "authored-on=sa2013-03-14T10:00:00Z") == ["t2"]


def test_periods_with_open_ends(store: Store) -> None:
    store.put_all(
        task("closed", executionPeriod={"start": "2020-01-01", "end": "2020-12-31"}),
        task("open-end", executionPeriod={"start": "2021-06-01"}),
        task("open-start", executionPeriod={"end": "2019-06-01"}),
    )
    assert ids(store, "Task", "period=2020") == ["closed"]
    assert ids(store, "Task", "period=gt2022") == ["open-end"]
    assert ids(store, "Task", "period=lt2019") == ["open-start"]
    assert ids(store, "Task", "period=sa2020-12-31") == ["open-end"]
    assert ids(store, "Task", "period=eb2020") == ["open-start"]
    assert ids(store, "Task", "period=ge2020-06") == ["closed", "open-end"]


def test_date_approximately(store: Store) -> None:
    store.put_all(
        task("near", authoredOn="2000-01-20"),
        task("far", authoredOn="1996-01-01"),
        task("after", authoredOn="2005-06-01"),
    )
    # Distance to now is over 24 years, so the margin is more than two years.
    assert ids(store, "Task", "authored-on=ap2000-01-01") == ["near"]
    assert ids(store, "Task", "authored-on=ap2000") == ["near"]


def test_last_updated(store: Store) -> None:
    store.put(patient("a"), last_updated="2024-05-01T10:00:00Z")
    store.put(patient("b"), last_updated="2024-05-02T10:00:00Z")
    store.put(patient("c"), last_updated="2024-05-03T00:00:00Z")
    assert ids(store, "Patient", "_lastUpdated=2024-05-02") == ["b"]
    assert ids(store, "Patient", "_lastUpdated=ge2024-05-02") == ["b", "c"]
    assert ids(store, "Patient", "_lastUpdated=gt2024-05-02") == ["c"]
    assert ids(store, "Patient", "_lastUpdated=lt2024-05-02T10:00:00Z") == ["a"]
    assert ids(store, "Patient", "_lastUpdated=le2024-05-02T10:00:00Z") == ["a", "b"]
    assert ids(store, "Patient", "_lastUpdated=ne2024-05-02") == ["a", "c"]
    assert ids(store, "Patient", "_lastUpdated=sa2024-05-01&_lastUpdated=eb2024-05-03") == ["b"]


# --------------------------------------------------------------------------- number / quantity


@pytest.fixture
def measured(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    """Goal gets a quantity parameter ``target-value`` (no stored R4 type has one)."""
    extra = SearchParam("target-value", "quantity", "Goal", "Goal.target.detail")

    def with_quantity(resource_type: str) -> dict[str, SearchParam]:
        found = params_for(resource_type)
        return {**found, "target-value": extra} if resource_type == "Goal" else found

    monkeypatch.setattr(params_module, "params_for", with_quantity)
    rows = [
        ("g100", 100.0, 99.5, 100.5, "http://unitsofmeasure.org", "mg"),
        ("g5.4", 5.4, 5.35, 5.45, "http://unitsofmeasure.org", "mg"),
        ("g5.4-kg", 5.4, 5.35, 5.45, "http://unitsofmeasure.org", "kg"),
        ("g99.6", 99.6, 99.55, 99.65, None, None),
    ]
    for gid, value, low, high, system, code in rows:
        pk = store.put({"resourceType": "Goal", "id": gid, "lifecycleStatus": "active"})
        with store.engine.begin() as conn:
            conn.execute(
                insert(sp_number).values(
                    resource_pk=pk,
                    res_type="Goal",
                    param="target-value",
                    value=value,
                    low=low,
                    high=high,
                    system=system,
                    code=code,
                )
            )
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("target-value=100", {"g100", "g99.6"}),
        ("target-value=100.0", {"g100"}),
        ("target-value=1e2", {"g100", "g99.6"}),
        ("target-value=ne100", {"g5.4", "g5.4-kg"}),
        ("target-value=gt99.6", {"g100"}),
        ("target-value=ge99.6", {"g100", "g99.6"}),
        ("target-value=lt6", {"g5.4", "g5.4-kg"}),
        ("target-value=le5.4", {"g5.4", "g5.4-kg"}),
        ("target-value=ap95", {"g100", "g99.6"}),
        ("target-value=5.4|http://unitsofmeasure.org|mg", {"g5.4"}),
        ("target-value=5.4||kg", {"g5.4-kg"}),
        ("target-value=gt1|http://unitsofmeasure.org|mg", {"g100", "g5.4"}),
    ],
)
def test_quantities(measured: Store, query: str, expected: set[str]) -> None:
    assert same(measured, "Goal", query) == expected


@pytest.mark.parametrize("value", ["abc", "xx5", "5|mg", "5.4.1"])
def test_bad_numbers_are_invalid(measured: Store, value: str) -> None:
    with pytest.raises(InvalidSearch, match="target-value"):
        measured.search("Goal", [("target-value", value)])


# --------------------------------------------------------------------------- uri


def test_uri_exact_below_above(store: Store) -> None:
    store.put_all(
        patient("a", meta={"profile": ["http://silta.fi/fhir/StructureDefinition/Patient"]}),
        patient("b", meta={"profile": ["http://silta.fi/fhir/StructureDefinition/Patient/v2"]}),
        patient("c", meta={"profile": ["http://other.fi/fhir/StructureDefinition/Patient"]}),
    )
    base = "http://silta.fi/fhir/StructureDefinition/Patient"
    assert ids(store, "Patient", f"_profile={base}") == ["a"]
    assert ids(store, "Patient", "_profile:below=http://silta.fi/fhir/") == ["a", "b"]
    assert ids(store, "Patient", f"_profile:above={base}/v2/_history/1") == ["a", "b"]
    assert ids(store, "Patient", f"_profile:above={base}") == ["a"]


# --------------------------------------------------------------------------- sort


def test_multi_key_sort_with_missing_values_last(store: Store) -> None:
    store.put_all(
        patient("v-1990", family="Virtanen", birth="1990-01-01"),
        patient("v-1980", family="Virtanen", birth="1980-01-01"),
        patient("v-none", family="Virtanen"),
        patient("k-2000", family="Korhonen", birth="2000-01-01"),
        patient("none-1970", birth="1970-01-01"),
        patient("none-none"),
        patient("o-1955", family="Öhman", birth="1955-02-28"),
    )
    assert ids(store, "Patient", "_sort=family,-birthdate") == [
        "k-2000",
        "o-1955",
        "v-1990",
        "v-1980",
        "v-none",
        "none-1970",
        "none-none",
    ]
    assert ids(store, "Patient", "_sort=-family,birthdate") == [
        "v-1980",
        "v-1990",
        "v-none",
        "o-1955",
        "k-2000",
        "none-1970",
        "none-none",
    ]
    assert ids(store, "Patient", "_sort=birthdate") == [
        "o-1955",
        "none-1970",
        "v-1980",
        "v-1990",
        "k-2000",
        "v-none",
        "none-none",
    ]
    assert ids(store, "Patient", "_sort=-_id") == sorted(
        ids(store, "Patient", "_sort=_id"), reverse=True
    )
    assert ids(store, "Patient", "_sort=-_lastUpdated")[0] == "o-1955"


def test_sort_on_token_reference_uri(store: Store) -> None:
    store.put_all(
        service_request("b", "Patient/p2", status="completed"),
        service_request("a", "Patient/p1", status="active"),
        service_request("c", None, status="draft"),
    )
    assert ids(store, "ServiceRequest", "_sort=status") == ["a", "b", "c"]
    assert ids(store, "ServiceRequest", "_sort=-subject") == ["b", "a", "c"]
    assert ids(store, "ServiceRequest", "_sort=_profile,_id") == ["a", "b", "c"]


# --------------------------------------------------------------------------- paging


def walk(
    store: Store, resource_type: str, query: str, count: int
) -> tuple[list[list[str]], list[Any]]:
    """Follows next links to the end; returns the ids per page and the pages."""
    request = store.request(resource_type, query, count=count)
    pages: list[Any] = []
    with store.engine.connect() as conn:
        page = execute_search(conn, request)
    pages.append(page)
    while page.next_cursor:
        assert len(pages) < 100, "the next links do not come to an end"
        request = store.request(resource_type, f"{query}&_cursor={page.next_cursor}", count=count)
        with store.engine.connect() as conn:
            page = execute_search(conn, request)
        pages.append(page)
    return [[r.res_id for r in p.matches] for p in pages], pages


def flatten(pages: list[list[str]]) -> list[str]:
    return [rid for page in pages for rid in page]


def page_at(store: Store, resource_type: str, query: str, cursor: str | None, count: int) -> Any:
    text = f"{query}&_cursor={cursor}" if cursor else query
    return store.search(resource_type, text, count=count)


def test_keyset_pages_cover_everything_once(store: Store) -> None:
    store.put_all(*(patient(f"p{i:02d}", gender="female" if i % 2 else "male") for i in range(25)))
    query_module._COMPILED_SEARCHES.clear()
    pages, raw = walk(store, "Patient", "gender=female", 5)
    # The next pages share one compiled statement, each bound to its own cursor.
    assert [key[0] for key in query_module._COMPILED_SEARCHES].count("page forward") == 1
    assert [len(p) for p in pages] == [5, 5, 2]
    assert flatten(pages) == [f"p{i:02d}" for i in range(1, 25, 2)]
    assert raw[0].previous_cursor is None and raw[-1].next_cursor is None
    assert all(p.previous_cursor for p in raw[1:])
    assert all(p.total == 12 for p in raw)


def test_paging_stays_correct_while_others_write(store: Store) -> None:
    store.put_all(*(patient(f"p{i:02d}", family=f"Name{i % 7}") for i in range(20)))
    for query in ("_sort=family", "_sort=-family,_id", "", "_sort=-_lastUpdated"):
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = page_at(store, "Patient", query or "_count=6", cursor, 6)
            seen.extend(r.res_id for r in page.matches)
            pages += 1
            # Someone writes between page fetches: new matches anywhere in the sort order.
            store.put(patient(f"new-{query}-{pages}", family=f"Name{pages % 7}"))
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages >= 4
        assert len(seen) == len(set(seen)), f"duplicates with {query!r}"
        assert {f"p{i:02d}" for i in range(20)} <= set(seen), f"skipped rows with {query!r}"


def test_keyset_breaks_ties_on_equal_sort_values(store: Store) -> None:
    for i in range(9):
        store.put(patient(f"p{i}"), last_updated=f"2024-05-0{1 + i // 4}T10:00:00Z")
    for query in ("_sort=-_lastUpdated", "_sort=_lastUpdated", "_sort=-_lastUpdated,_id"):
        pages, _ = walk(store, "Patient", query, 2)
        flat = flatten(pages)
        assert sorted(flat) == [f"p{i}" for i in range(9)], query
    pages, _ = walk(store, "Patient", "_sort=-_lastUpdated", 2)
    assert flatten(pages) == ["p8", "p7", "p6", "p5", "p4", "p3", "p2", "p1", "p0"]


def test_previous_cursors_walk_back(store: Store) -> None:
    store.put_all(*(patient(f"p{i:02d}", family=f"N{i % 4}") for i in range(12)))
    for query in ("gender:missing=true", "_sort=family,-_id"):
        forward, raw = walk(store, "Patient", query, 5)
        assert [len(p) for p in forward] == [5, 5, 2]
        back = page_at(store, "Patient", query, raw[-1].previous_cursor, 5)
        assert [r.res_id for r in back.matches] == forward[1]
        back = page_at(store, "Patient", query, back.previous_cursor, 5)
        assert [r.res_id for r in back.matches] == forward[0]
        assert back.previous_cursor is None
        again = page_at(store, "Patient", query, back.next_cursor, 5)
        assert [r.res_id for r in again.matches] == forward[1]


def test_empty_page_after_deletes_still_links_back(store: Store) -> None:
    store.put_all(*(patient(f"p{i}") for i in range(4)))
    first = store.search("Patient", "", count=2)
    store.delete("Patient", "p2")
    store.delete("Patient", "p3")
    empty = page_at(store, "Patient", "", first.next_cursor, 2)
    assert empty.matches == [] and empty.next_cursor is None
    back = page_at(store, "Patient", "", empty.previous_cursor, 2)
    assert [r.res_id for r in back.matches] == ["p0", "p1"]


def test_tampered_or_foreign_cursors_are_invalid(store: Store) -> None:
    store.put_all(*(patient(f"p{i}", family="x") for i in range(3)))
    page = store.search("Patient", "_sort=family", count=1)
    assert page.next_cursor
    bad_json = base64.urlsafe_b64encode(b'{"v":1,"s":"family","b":0,"i":0,"k":["x"]}').decode()
    wrong_type = base64.urlsafe_b64encode(
        orjson.dumps({"v": 1, "s": "family", "b": 0, "i": 0, "k": [0, 5, 1]})
    ).decode()
    for cursor in ("garbage!", "e30", bad_json, wrong_type, page.next_cursor[:-3]):
        with pytest.raises(InvalidSearch, match="_cursor"):
            page_at(store, "Patient", "_sort=family", cursor, 1)
    with pytest.raises(InvalidSearch, match="_sort"):
        page_at(store, "Patient", "_sort=-family", page.next_cursor, 1)


# --------------------------------------------------------------------------- totals


def test_totals(people: Store) -> None:
    assert people.search("Patient", "gender=female").total == 2
    assert people.search("Patient", "gender=female", count=1).total == 2
    assert people.search("Patient", "gender=female&_total=none").total is None
    assert people.search("Patient", "gender=female&_total=accurate", count=1).total == 2
    assert people.search("Patient", "gender=female&gender:not=male&_count=1").total == 2
    only_total = people.search("Patient", "gender=female&_summary=count")
    assert only_total.total == 2 and only_total.matches == [] and only_total.next_cursor is None
    zero = people.search("Patient", "family=o&_count=0")
    assert zero.total == 1 and zero.matches == []


# --------------------------------------------------------------------------- _include / _revinclude


def test_include_and_revinclude(referrals: Store) -> None:
    page = referrals.search("Task", "_include=Task:focus&status=requested")
    assert [r.res_id for r in page.matches] == ["t-virtanen", "t-korhonen-1", "t-korhonen-2"]
    assert [r.res_id for r in page.included] == ["sr-virtanen", "sr-korhonen"]

    page = referrals.search("ServiceRequest", "_revinclude=Task:focus&subject.family=korhonen")
    assert [r.res_id for r in page.matches] == ["sr-korhonen"]
    assert [r.res_id for r in page.included] == ["t-korhonen-1", "t-korhonen-2"]

    page = referrals.search("Task", "_include=Task:focus:Patient&_id=t-virtanen")
    assert page.included == []


def test_include_iterate_one_level_and_no_duplicates(referrals: Store) -> None:
    page = referrals.search(
        "Task", "_include=Task:focus&_include:iterate=ServiceRequest:subject&_count=100"
    )
    included = [(r.res_type, r.res_id) for r in page.included]
    assert len(included) == len(set(included))
    assert ("Patient", "virtanen") in included and ("ServiceRequest", "sr-ohman") in included

    page = referrals.search("ServiceRequest", "_revinclude=Task:focus&_include=*")
    matched = {r.pk for r in page.matches}
    assert not matched & {r.pk for r in page.included}


def test_includes_skip_deleted_and_apply_visibility(referrals: Store) -> None:
    referrals.delete("ServiceRequest", "sr-virtanen")
    page = referrals.search("Task", "_include=Task:focus")
    assert "sr-virtanen" not in [r.res_id for r in page.included]
    page = referrals.search(
        "Task", "_include=Task:focus", visibility=lambda res, _type: res.c.res_id != "sr-korhonen"
    )
    assert [r.res_id for r in page.included] == ["sr-ohman"]
    page = referrals.search(
        "ServiceRequest",
        "_revinclude=Task:focus",
        visibility=lambda res, _type: res.c.res_id.not_in(["t-korhonen-2", "sr-ohman"]),
    )
    assert [r.res_id for r in page.matches] == ["sr-korhonen", "sr-nobody"]
    assert [r.res_id for r in page.included] == ["t-korhonen-1"]


@pytest.mark.parametrize("driver_limit", [0, 1, 1000])
def test_several_criteria_match_alike_whichever_drives(
    referrals: Store, monkeypatch: pytest.MonkeyPatch, driver_limit: int
) -> None:
    """With several criteria one may drive the query and the others check each candidate
    (SQLite); the matches and totals must not depend on that choice."""
    monkeypatch.setattr(query_module, "_DRIVER_LIMIT", driver_limit)
    cases = {
        "gender=female": ["ohman", "korhonen"],
        "family=o,k": ["ohman", "korhonen"],
        "gender=female&family=o,k": ["ohman", "korhonen"],
        "gender=female&birthdate=ge1990&name=liisa": ["korhonen"],
        "gender:not=male&family=korhonen,virtanen&_sort=-family": ["korhonen"],
        "identifier=010190-900P&_id=virtanen,anon": ["virtanen"],
    }
    assert_matches(referrals, "Patient", cases)
    page = referrals.search("ServiceRequest", "status=active&subject.gender=female&_count=1")
    assert [r.res_id for r in page.matches] == ["sr-korhonen"] and page.total == 1
    page = referrals.search("Task", "status=requested&focus.status=active", count=2)
    assert [r.res_id for r in page.matches] == ["t-virtanen", "t-korhonen-1"]
    assert page.total == 3 and page.next_cursor


def test_searches_of_one_shape_take_the_way_in_their_own_values_call_for(
    referrals: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the counted sizes of a search's criteria choose its plan, so a compiled
    statement is kept per plan: searches of one shape whose values make another
    criterion the smallest still match what they should."""
    monkeypatch.setattr(query_module, "_DRIVER_LIMIT", 1)
    query_module._COMPILED_SEARCHES.clear()
    cases = {
        # status=active has 3 index rows, the subject 1: the subject drives.
        "status=active&subject=Patient/ohman": [],
        "status=active&subject=Patient/korhonen": ["sr-korhonen"],
        # status=completed has 1, the subject 1: the first of the two drives.
        "status=completed&subject=Patient/korhonen": [],
        "status=completed&subject=Patient/ohman": ["sr-ohman"],
    }
    assert_matches(referrals, "ServiceRequest", cases)
    pages = {key for key in query_module._COMPILED_SEARCHES if key[0] == "page"}
    assert len({key[2] for key in pages}) == 1  # one shape
    if referrals.engine.dialect.name == "sqlite":
        assert len(pages) == 2  # two ways in
    many = referrals.search("Task", "status=requested&focus=ServiceRequest/sr-korhonen")
    assert [r.res_id for r in many.matches] == ["t-korhonen-1", "t-korhonen-2"]


# --------------------------------------------------------------------------- deleted, find_matches


def test_deleted_resources_never_match(people: Store) -> None:
    people.delete("Patient", "korhonen")
    assert "korhonen" not in ids(people, "Patient", "")
    assert "korhonen" not in ids(people, "Patient", "gender:not=male")
    assert "korhonen" not in ids(people, "Patient", "_id=korhonen")
    assert "korhonen" not in ids(people, "Patient", "family:missing=true")
    assert people.search("Patient", "gender=female").total == 1


def test_visibility_restricts_matches_and_totals(people: Store) -> None:
    page = people.search(
        "Patient", "gender=female", visibility=lambda res, _type: res.c.res_id != "ohman"
    )
    assert [r.res_id for r in page.matches] == ["korhonen"]
    assert page.total == 1


def test_compiled_searches_bind_each_searchs_own_values(people: Store) -> None:
    """Searches of one shape share one compiled statement, each with its own values."""
    query_module._COMPILED_SEARCHES.clear()
    assert ids(people, "Patient", f"identifier={HETU}|010190-900P") == ["virtanen"]
    assert ids(people, "Patient", f"identifier={HETU}|280255-9340") == ["ohman"]
    assert ids(people, "Patient", f"identifier={HETU}|999999-999X") == []
    assert ids(people, "Patient", "identifier=urn:other|010190-900P") == ["other-system"]
    pages = [key for key in query_module._COMPILED_SEARCHES if key[0] == "page"]
    assert len(pages) == 1
    assert people.search("Patient", f"identifier={HETU}|010190-900P", count=1).total == 1
    with people.engine.connect() as conn:
        for hetu, expected in (("010190-900P", ["virtanen"]), ("280255-9340", ["ohman"])):
            found = find_matches(conn, "Patient", [("identifier", f"{HETU}|{hetu}")])
            assert [r.res_id for r in found] == expected


def test_compiled_ids_and_last_updated_bind_each_searchs_own_values(people: Store) -> None:
    """``_id`` lists and ``_lastUpdated`` polls of one shape share a compiled statement."""
    query_module._COMPILED_SEARCHES.clear()
    assert ids(people, "Patient", "_id=virtanen,ohman") == ["virtanen", "ohman"]
    assert ids(people, "Patient", "_id=korhonen,nobody") == ["korhonen"]
    updated = sorted((row.last_updated, row.res_id) for row in people.search("Patient", "").matches)
    middle = updated[len(updated) // 2]
    moment = datetime.fromtimestamp(middle[0] / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    newer = [res_id for at, res_id in updated if at > middle[0]]
    older = [res_id for at, res_id in updated if at <= middle[0]]
    gt, le = f"gt{moment}", f"le{moment}"
    assert sorted(ids(people, "Patient", f"_lastUpdated={gt}&gender=female,male")) == sorted(
        r for r in newer if r in ("virtanen", "ohman", "korhonen")
    )
    assert sorted(ids(people, "Patient", f"_lastUpdated={le}&gender=female,male")) == sorted(
        r for r in older if r in ("virtanen", "ohman", "korhonen")
    )
    shapes = {key[2] for key in query_module._COMPILED_SEARCHES if key[0] == "page"}
    assert len(shapes) == 4  # every Patient, two ids, the gt and the le polls


def test_compiled_searches_keep_each_access_policys_condition(people: Store) -> None:
    """A keyed visibility is compiled into the statement per key: the same shape with
    another key never reuses the first one's condition."""

    def hiding(res_id: str) -> KeyedVisibility:
        return KeyedVisibility(res_id, lambda res, _type: res.c.res_id != res_id)

    query = "identifier=010190-900P"  # any system: three Patients
    without_virtanen = ["other-system", "no-system"]
    assert ids(people, "Patient", query, visibility=hiding("virtanen")) == without_virtanen
    assert ids(people, "Patient", query, visibility=hiding("no-system")) == [
        "virtanen",
        "other-system",
    ]
    assert ids(people, "Patient", query, visibility=hiding("virtanen")) == without_virtanen
    page = people.search("Patient", query, count=1, visibility=hiding("other-system"))
    assert [r.res_id for r in page.matches] == ["virtanen"]
    assert page.total == 2


def test_find_matches(people: Store) -> None:
    with people.engine.connect() as conn:
        found = find_matches(conn, "Patient", [("identifier", f"{HETU}|010190-900P")])
        assert [r.res_id for r in found] == ["virtanen"]
        assert orjson.loads(found[0].body)["id"] == "virtanen"
        assert len(find_matches(conn, "Patient", [("gender", "female")], limit=5)) == 2
        assert len(find_matches(conn, "Patient", [("identifier", "010190-900P")])) == 2
        with pytest.raises(InvalidSearch):
            find_matches(conn, "Patient", [("nonsense", "x")])
        with pytest.raises(InvalidSearch):
            find_matches(conn, "Patient", [("birthdate", "notadate")])
        with pytest.raises(InvalidSearch):
            find_matches(conn, "Patient", [])


def test_lenient_search_ignores_unknown_parameters(people: Store) -> None:
    assert ids(people, "Patient", "gender=male&nonsense=1", strict=False) == ["virtanen"]
    with pytest.raises(InvalidSearch, match="nonsense"):
        people.search("Patient", "gender=male&nonsense=1", strict=True)
