"""search over HTTP (R4 http.html §3.1.0.9, search.html): the Bundle, links and result parameters.

The matching semantics of each parameter type are covered in tests/search/.
"""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.fixtures import load_fixture

STORY = (
    "kela",
    "kela-toimeentulotuki",
    "pirha",
    "patient-aijala",
    "patient-ohman",
    "practitioner-kela-makinen",
    "servicerequest-huoli-aijala",
    "task-huoli-aijala",
    "consent-aijala",
    "careplan-aijala",
)


def load_story(client: TestClient) -> None:
    """Stores the fixtures with their own ids so their references resolve."""
    for name in STORY:
        resource = load_fixture(name)
        response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code == 201, response.text


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def test_search_by_token_reference_date_and_chain(client: TestClient) -> None:
    load_story(client)
    hetu = load_fixture("patient-aijala")["identifier"][0]["value"]
    by_token = client.get(
        "/fhir/Patient", params={"identifier": f"urn:oid:1.2.246.21|{hetu}"}
    ).json()
    assert by_token["type"] == "searchset"
    assert by_token["total"] == 1 and ids(by_token) == ["patient-aijala"]
    assert by_token["entry"][0]["fullUrl"] == "http://testserver/fhir/Patient/patient-aijala"
    by_reference = client.get(
        "/fhir/ServiceRequest", params={"subject": "Patient/patient-aijala"}
    ).json()
    assert ids(by_reference) == ["servicerequest-huoli-aijala"]
    by_date = client.get("/fhir/ServiceRequest", params={"authored": "2025-01"}).json()
    assert ids(by_date) == ["servicerequest-huoli-aijala"]
    none_in_2024 = client.get("/fhir/ServiceRequest", params={"authored": "2024"}).json()
    assert none_in_2024["total"] == 0
    chained = client.get(
        "/fhir/ServiceRequest", params={"subject:Patient.identifier": f"urn:oid:1.2.246.21|{hetu}"}
    ).json()
    assert ids(chained) == ["servicerequest-huoli-aijala"]
    by_name = client.get("/fhir/Patient", params={"name": "aijala"}).json()
    assert ids(by_name) == ["patient-aijala"]


def test_include_and_revinclude(client: TestClient) -> None:
    load_story(client)
    bundle = client.get(
        "/fhir/Task", params={"_id": "task-huoli-aijala", "_include": "Task:focus"}
    ).json()
    assert ids(bundle) == ["task-huoli-aijala"]
    assert ids(bundle, "include") == ["servicerequest-huoli-aijala"]
    assert bundle["total"] == 1
    reverse = client.get(
        "/fhir/ServiceRequest",
        params={"_id": "servicerequest-huoli-aijala", "_revinclude": "Task:focus"},
    ).json()
    assert ids(reverse, "include") == ["task-huoli-aijala"]


def test_paging_links_and_counts(client: TestClient) -> None:
    for index in range(7):
        patient = load_fixture("patient-ohman")
        patient["id"] = f"p{index}"
        client.put(f"/fhir/Patient/p{index}", json=patient)
    first = client.get("/fhir/Patient", params={"_count": 3, "_sort": "_id"}).json()
    assert first["total"] == 7 and ids(first) == ["p0", "p1", "p2"]
    relations = {link["relation"]: link["url"] for link in first["link"]}
    assert relations["self"].startswith("http://testserver/fhir/Patient?")
    assert "previous" not in relations
    second = client.get(relations["next"].replace("http://testserver", "")).json()
    assert ids(second) == ["p3", "p4", "p5"]
    back = {link["relation"]: link["url"] for link in second["link"]}["previous"]
    assert ids(client.get(back.replace("http://testserver", "")).json()) == ["p0", "p1", "p2"]
    count_only = client.get("/fhir/Patient", params={"_summary": "count"}).json()
    assert count_only["total"] == 7 and "entry" not in count_only
    no_total = client.get("/fhir/Patient", params={"_total": "none"}).json()
    assert "total" not in no_total


def test_summary_and_elements(client: TestClient) -> None:
    load_story(client)
    elements = client.get(
        "/fhir/Patient", params={"_id": "patient-aijala", "_elements": "name"}
    ).json()
    resource = elements["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "name"}
    assert any(tag["code"] == "SUBSETTED" for tag in resource["meta"]["tag"])
    summary = client.get(
        "/fhir/Patient", params={"_id": "patient-aijala", "_summary": "true"}
    ).json()
    assert "name" in summary["entry"][0]["resource"]
    read_elements = client.get(
        "/fhir/Patient/patient-aijala", params={"_elements": "gender"}
    ).json()
    assert set(read_elements) == {"resourceType", "id", "meta", "gender"}


def test_unknown_parameters_lenient_and_strict(client: TestClient) -> None:
    lenient = client.get("/fhir/Patient", params={"shoe-size": "44"})
    assert lenient.status_code == 200
    outcome = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "shoe-size" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    strict = client.get(
        "/fhir/Patient", params={"shoe-size": "44"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient", params={"birthdate": "not-a-date"}).status_code == 400


def test_post_search(client: TestClient) -> None:
    load_story(client)
    response = client.post(
        "/fhir/Patient/_search",
        content=b"gender=female&_count=5",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert "patient-aijala" in ids(response.json())
    xml = client.get("/fhir/Patient", params={"_format": "xml"})
    assert xml.status_code == 200 and b"<Bundle" in xml.content
