"""transaction and batch Bundles (R4 http.html §3.1.0.11)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from starlette.testclient import TestClient

from tests.fixtures import load_fixture


def total(client: TestClient, query: str) -> int:
    value: int = client.get(f"/fhir/{query}", params={"_summary": "count"}).json()["total"]
    return value


def test_transaction_creates_and_links_entries(client: TestClient) -> None:
    bundle = load_fixture("transaction-notification")
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    assert len(result["entry"]) == len(bundle["entry"])
    locations = [e["response"]["location"] for e in result["entry"]]
    assert all(e["response"]["status"].startswith("201") for e in result["entry"])
    patient_ref = next(loc for loc in locations if loc.startswith("Patient/")).rsplit(
        "/_history", 1
    )[0]
    request_ref = next(loc for loc in locations if loc.startswith("ServiceRequest/")).rsplit(
        "/_history", 1
    )[0]
    service_request = client.get(f"/fhir/{request_ref}").json()
    assert service_request["subject"]["reference"] == patient_ref
    task = client.get("/fhir/Task", params={"focus": request_ref}).json()
    assert task["total"] == 1
    assert task["entry"][0]["resource"]["for"]["reference"] == patient_ref

    again = client.post("/fhir", json=load_fixture("transaction-notification")).json()
    patient_entry = next(
        e for e in again["entry"] if e["response"]["location"].startswith("Patient/")
    )
    assert patient_entry["response"]["status"] == "200 OK"  # ifNoneExist matched
    assert total(client, "Patient") == 1


def test_transaction_is_all_or_nothing(client: TestClient) -> None:
    bundle = load_fixture("transaction-notification")
    bundle["entry"][-1]["resource"]["status"] = "not-a-status"
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 422
    assert "Bundle.entry[" in response.json()["issue"][0]["diagnostics"]
    assert total(client, "Patient") == 0
    assert total(client, "ServiceRequest") == 0
    assert total(client, "Task") == 0
    assert client.get("/fhir/_history").json().get("entry") is None


def test_transaction_processing_order_and_conditional_reference(client: TestClient) -> None:
    patient = client.post("/fhir/Patient", json=load_fixture("patient-virtanen")).json()
    hetu = patient["identifier"][0]["value"]
    goal = client.post("/fhir/Goal", json=load_fixture("goal-aijala-asuminen")).json()
    request = load_fixture("servicerequest-huoli-aijala")
    request.pop("id")
    request["subject"] = {"reference": f"Patient?identifier=urn:oid:1.2.246.21|{hetu}"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": "ServiceRequest?_summary=count"}},
            {"resource": request, "request": {"method": "POST", "url": "ServiceRequest"}},
            {"request": {"method": "DELETE", "url": f"Goal/{goal['id']}"}},
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    # GET runs after the POST although it comes first: it counts the new request.
    assert entries[0]["resource"]["total"] == 1
    assert entries[2]["response"]["status"] == "204 No Content"
    assert client.get(f"/fhir/Goal/{goal['id']}").status_code == 410
    created = client.get(
        f"/fhir/{entries[1]['response']['location'].rsplit('/_history', 1)[0]}"
    ).json()
    assert created["subject"]["reference"] == f"Patient/{patient['id']}"


def test_transaction_get_after_delete_fails_whole_transaction(client: TestClient) -> None:
    goal = client.post("/fhir/Goal", json=load_fixture("goal-aijala-asuminen")).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": f"Goal/{goal['id']}"}},
            {"request": {"method": "DELETE", "url": f"Goal/{goal['id']}"}},
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 410
    assert client.get(f"/fhir/Goal/{goal['id']}").status_code == 200


def test_unresolvable_conditional_reference_fails(client: TestClient) -> None:
    request = load_fixture("servicerequest-huoli-aijala")
    request["subject"] = {"reference": "Patient?identifier=urn:oid:1.2.246.21|nobody"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": request, "request": {"method": "POST", "url": "ServiceRequest"}}],
    }
    assert client.post("/fhir", json=bundle).status_code == 412
    assert total(client, "ServiceRequest") == 0


def test_transaction_put_and_patch(client: TestClient) -> None:
    organization = load_fixture("pirha")
    task = client.post("/fhir/Task", json=load_fixture("task-huoli-aijala")).json()
    patch = base64.b64encode(
        orjson.dumps([{"op": "replace", "path": "/status", "value": "accepted"}])
    )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": organization,
                "request": {"method": "PUT", "url": f"Organization/{organization['id']}"},
            },
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": patch.decode(),
                },
                "request": {"method": "PATCH", "url": f"Task/{task['id']}"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created", "200 OK"]
    assert client.get(f"/fhir/Task/{task['id']}").json()["status"] == "accepted"


def test_batch_entries_are_independent(client: TestClient) -> None:
    bad = load_fixture("patient-ohman")
    bad["gender"] = "nope"
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": load_fixture("patient-aijala"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": bad, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
            {"request": {"method": "GET", "url": "Patient?gender=female"}},
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"].startswith("422")
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"].startswith("404")
    assert entries[3]["resource"]["type"] == "searchset"
    assert total(client, "Patient") == 1


def test_bundle_errors(client: TestClient) -> None:
    assert (
        client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}).status_code
        == 400
    )
    assert client.post("/fhir", json=load_fixture("patient-aijala")).status_code == 400
    no_request = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": load_fixture("kela")}],
    }
    assert client.post("/fhir", json=no_request).status_code == 400
    dangling = load_fixture("servicerequest-huoli-aijala")
    dangling["subject"] = {"reference": "urn:uuid:0f0f0f0f-0000-4000-8000-000000000000"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": dangling, "request": {"method": "POST", "url": "ServiceRequest"}}],
    }
    assert client.post("/fhir", json=bundle).status_code == 404
