"""Bad input: OperationOutcome with the right status and nothing written (R4 http.html §3.1.0.4)."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.fixtures import load_fixture


def count(client: TestClient, resource_type: str) -> int:
    total: int = client.get(f"/fhir/{resource_type}", params={"_summary": "count"}).json()["total"]
    return total


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/fhir/Patient",
        content=b'{"resourceType": "Patient",',
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert count(client, "Patient") == 0


def test_invalid_content_is_422_with_expression(client: TestClient) -> None:
    patient = load_fixture("patient-aijala")
    patient["birthDate"] = "1990-13-45"
    patient["unknownElement"] = True
    response = client.post("/fhir/Patient", json=patient)
    assert response.status_code == 422
    issues = response.json()["issue"]
    expressions = {e for issue in issues for e in issue.get("expression", [])}
    assert "Patient.birthDate" in expressions
    assert any("unknownElement" in e for e in expressions)
    assert count(client, "Patient") == 0


def test_bad_reference_syntax_is_422(client: TestClient) -> None:
    request = load_fixture("servicerequest-huoli-aijala")
    request["subject"] = {"reference": "not a reference"}
    response = client.post("/fhir/ServiceRequest", json=request)
    assert response.status_code == 422
    assert any(
        "ServiceRequest.subject" in e
        for i in response.json()["issue"]
        for e in i.get("expression", [])
    )


def test_body_type_must_match_url(client: TestClient) -> None:
    response = client.post("/fhir/Organization", json=load_fixture("patient-aijala"))
    assert response.status_code == 400


def test_body_over_limit_is_413(client: TestClient) -> None:
    patient = load_fixture("patient-aijala")
    patient["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * (11 * 1024 * 1024) + "</div>",
    }
    response = client.post("/fhir/Patient", json=patient)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


def test_unsupported_media_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/fhir/Patient", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def test_method_not_allowed_is_405(client: TestClient) -> None:
    response = client.post("/fhir/Patient/123")
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_xml_create_and_read(client: TestClient) -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir"><identifier><system value="urn:oid:1.2.246.21"/>'
        b'<value value="010190-9602"/></identifier><name><family value="'
        + "Äijälä".encode()
        + b'"/></name><birthDate value="1990-01-01"/></Patient>'
    )
    created = client.post(
        "/fhir/Patient",
        content=xml,
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"},
    )
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/fhir+xml")
    assert b"http://hl7.org/fhir" in created.content
    patient_id = created.headers["location"].split("/")[-3]
    as_json = client.get(f"/fhir/Patient/{patient_id}").json()
    assert as_json["name"][0]["family"] == "Äijälä"
    as_xml = client.get(f"/fhir/Patient/{patient_id}", params={"_format": "xml"})
    assert as_xml.headers["content-type"].startswith("application/fhir+xml")
    assert "Äijälä".encode() in as_xml.content


def test_xml_external_entity_is_rejected(client: TestClient) -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>'
    )
    response = client.post(
        "/fhir/Patient", content=xxe, headers={"Content-Type": "application/fhir+xml"}
    )
    assert response.status_code == 400
    assert "root:" not in response.text
    assert count(client, "Patient") == 0


def test_entity_expansion_bomb_is_rejected(client: TestClient) -> None:
    lol = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY l0 "lol">{lol}]>'
        '<Patient xmlns="http://hl7.org/fhir"><name><family value="&l9;"/></name></Patient>'
    ).encode()
    response = client.post(
        "/fhir/Patient", content=bomb, headers={"Content-Type": "application/fhir+xml"}
    )
    assert response.status_code == 400


def test_errors_follow_requested_format(client: TestClient) -> None:
    response = client.get("/fhir/Patient/nope", headers={"Accept": "application/fhir+xml"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert b"OperationOutcome" in response.content


def test_validate_operation(client: TestClient) -> None:
    patient = load_fixture("patient-aijala")
    ok = client.post("/fhir/Patient/$validate", json=patient)
    assert ok.status_code == 200
    assert ok.json()["issue"][0]["severity"] == "information"
    patient["gender"] = "unknown-code"
    bad = client.post("/fhir/Patient/$validate", json=patient)
    assert bad.status_code == 200
    assert bad.json()["issue"][0]["severity"] == "error"
    assert "Patient.gender" in bad.json()["issue"][0]["expression"]
    wrapped = client.post(
        "/fhir/Patient/$validate",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": load_fixture("patient-aijala")}],
        },
    )
    assert wrapped.json()["issue"][0]["severity"] == "information"
    created = client.post("/fhir/Patient", json=load_fixture("patient-aijala")).json()
    stored = client.get(f"/fhir/Patient/{created['id']}/$validate")
    assert stored.status_code == 200 and stored.json()["issue"][0]["severity"] == "information"
    assert client.get("/fhir/Patient/missing/$validate").status_code == 404
    assert count(client, "Patient") == 1


def test_capability_statement(client: TestClient) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for resource_type in (
        "Patient",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Endpoint",
        "CareTeam",
        "ServiceRequest",
        "Consent",
        "CarePlan",
        "Goal",
        "Task",
        "Communication",
        "DocumentReference",
        "Provenance",
        "AuditEvent",
        "Subscription",
        "MeasureReport",
    ):
        assert resource_type in resources
    task = resources["Task"]
    assert {"read", "vread", "update", "patch", "delete", "create", "search-type"} <= {
        i["code"] for i in task["interaction"]
    }
    assert "Task:focus" in task["searchInclude"]
    assert "Task:focus" in resources["ServiceRequest"]["searchRevInclude"]
    assert {"patient", "status", "owner", "focus"} <= {p["name"] for p in task["searchParam"]}
    xml = client.get("/fhir/metadata", params={"_format": "xml"})
    assert xml.status_code == 200 and xml.content.count(b"<resource>") == len(resources)
