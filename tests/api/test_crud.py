"""create / read / vread / update / patch / delete and their conditional forms (R4 http.html)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from starlette.testclient import TestClient

from gateway.store.database import Database
from tests.fixtures import load_fixture

FHIR_JSON = "application/fhir+json"


def create(client: TestClient, name: str) -> dict[str, Any]:
    resource = load_fixture(name)
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_assigns_id_version_and_location(client: TestClient) -> None:
    patient = load_fixture("patient-aijala")
    response = client.post("/fhir/Patient", json=patient)
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "patient-aijala"  # the server assigns ids on create
    assert body["meta"]["versionId"] == "1"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["meta"]["lastUpdated"])
    assert response.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert "last-modified" in response.headers


def test_read_and_vread(client: TestClient) -> None:
    created = create(client, "patient-ohman")
    read = client.get(f"/fhir/Patient/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created
    assert read.headers["etag"] == 'W/"1"'
    vread = client.get(f"/fhir/Patient/{created['id']}/_history/1")
    assert vread.status_code == 200 and vread.json() == created
    assert client.get(f"/fhir/Patient/{created['id']}/_history/9").status_code == 404


def test_read_unknown_id_and_type_give_operation_outcome(client: TestClient) -> None:
    missing = client.get("/fhir/Patient/does-not-exist")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    assert missing.json()["issue"][0]["code"] == "not-found"
    unknown_type = client.get("/fhir/Unicorn/1")
    assert unknown_type.status_code == 404
    assert "Unicorn" in unknown_type.json()["issue"][0]["diagnostics"]
    no_route = client.get("/fhir/Patient/1/2/3/4")
    assert no_route.status_code == 404
    assert no_route.json()["resourceType"] == "OperationOutcome"


def test_update_versions_and_if_match(client: TestClient) -> None:
    created = create(client, "patient-virtanen")
    url = f"/fhir/Patient/{created['id']}"
    changed = {**created, "gender": "other"}
    first = client.put(url, json=changed, headers={"If-Match": 'W/"1"'})
    assert first.status_code == 200, first.text
    assert first.json()["meta"]["versionId"] == "2"
    assert first.headers["etag"] == 'W/"2"'
    stale = client.put(url, json={**changed, "gender": "female"}, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).json()["gender"] == "other"
    assert client.get(f"{url}/_history/1").json()["gender"] == created["gender"]


def test_update_with_same_content_creates_no_version(client: TestClient) -> None:
    created = create(client, "patient-virtanen")
    again = client.put(f"/fhir/Patient/{created['id']}", json=created)
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "1"


def test_update_as_create_with_client_id(client: TestClient) -> None:
    organization = load_fixture("kela")
    response = client.put("/fhir/Organization/kela", json=organization)
    assert response.status_code == 201
    assert response.json()["id"] == "kela"
    assert response.headers["location"].endswith("/Organization/kela/_history/1")
    assert client.put("/fhir/Organization/kela", json=organization).status_code == 200


def test_update_id_errors(client: TestClient) -> None:
    organization = load_fixture("kela")
    mismatch = client.put("/fhir/Organization/other", json=organization)
    assert mismatch.status_code == 400
    organization.pop("id")
    missing = client.put("/fhir/Organization/kela", json=organization)
    assert missing.status_code == 400
    wrong_type = client.put("/fhir/Patient/kela", json={**organization, "id": "kela"})
    assert wrong_type.status_code == 400


def test_conditional_create(client: TestClient) -> None:
    patient = load_fixture("patient-aijala")
    hetu = patient["identifier"][0]["value"]
    header = {"If-None-Exist": f"identifier=urn:oid:1.2.246.21|{hetu}"}
    first = client.post("/fhir/Patient", json=patient, headers=header)
    assert first.status_code == 201
    second = client.post("/fhir/Patient", json=patient, headers=header)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 1
    client.post("/fhir/Patient", json=patient)
    ambiguous = client.post("/fhir/Patient", json=patient, headers=header)
    assert ambiguous.status_code == 412


def test_conditional_update(client: TestClient) -> None:
    patient = load_fixture("patient-ohman")
    patient.pop("id")
    hetu = patient["identifier"][0]["value"]
    criteria = f"identifier=urn:oid:1.2.246.21|{hetu}"
    created = client.put(f"/fhir/Patient?{criteria}", json=patient)
    assert created.status_code == 201
    patient["gender"] = "other"
    updated = client.put(f"/fhir/Patient?{criteria}", json=patient)
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    client.post("/fhir/Patient", json=patient)
    assert client.put(f"/fhir/Patient?{criteria}", json=patient).status_code == 412
    assert client.put("/fhir/Patient", json=patient).status_code == 400


def test_delete_then_gone_and_history(client: TestClient) -> None:
    created = create(client, "goal-aijala-asuminen")
    url = f"/fhir/Goal/{created['id']}"
    assert client.delete(url).status_code == 204
    gone = client.get(url)
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert client.delete(url).status_code == 204
    assert client.delete("/fhir/Goal/never-existed").status_code == 204
    history = client.get(f"{url}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    assert client.get(f"{url}/_history/2").status_code == 410
    assert client.get(f"{url}/_history/1").status_code == 200
    assert client.get("/fhir/Goal", params={"_summary": "count"}).json()["total"] == 0
    recreated = client.put(url, json={**created})
    assert recreated.status_code == 201
    assert recreated.json()["meta"]["versionId"] == "3"


def test_conditional_delete(client: TestClient) -> None:
    created = create(client, "patient-virtanen")
    hetu = created["identifier"][0]["value"]
    response = client.delete(f"/fhir/Patient?identifier=urn:oid:1.2.246.21|{hetu}")
    assert response.status_code == 204
    assert client.get(f"/fhir/Patient/{created['id']}").status_code == 410
    assert client.delete("/fhir/Patient?identifier=nothing").status_code == 204
    create(client, "patient-virtanen")
    create(client, "patient-virtanen")
    assert client.delete(f"/fhir/Patient?identifier=urn:oid:1.2.246.21|{hetu}").status_code == 412
    assert client.delete("/fhir/Patient").status_code == 405


def test_json_patch(client: TestClient) -> None:
    created = create(client, "task-huoli-aijala")
    url = f"/fhir/Task/{created['id']}"
    headers = {"Content-Type": "application/json-patch+json"}
    patch = [
        {"op": "replace", "path": "/status", "value": "accepted"},
        {"op": "add", "path": "/note", "value": [{"text": "Asiakkaaseen otettu yhteyttä"}]},
    ]
    response = client.patch(url, content=_json(patch), headers={**headers, "If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    assert response.json()["meta"]["versionId"] == "2"
    stale = client.patch(url, content=_json(patch), headers={**headers, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    invalid = client.patch(
        url,
        content=_json([{"op": "replace", "path": "/status", "value": "bogus"}]),
        headers=headers,
    )
    assert invalid.status_code == 422
    missing_path = client.patch(
        url, content=_json([{"op": "remove", "path": "/nope"}]), headers=headers
    )
    assert missing_path.status_code == 422
    id_change = client.patch(
        url, content=_json([{"op": "replace", "path": "/id", "value": "x"}]), headers=headers
    )
    assert id_change.status_code == 422
    wrong_type = client.patch(
        url, content=_json(patch), headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415
    not_a_list = client.patch(url, content=b'{"op": "add"}', headers=headers)
    assert not_a_list.status_code == 400
    assert client.get(url).json()["meta"]["versionId"] == "2"


def test_prefer_return(client: TestClient) -> None:
    patient = load_fixture("patient-aijala")
    minimal = client.post("/fhir/Patient", json=patient, headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert "location" in minimal.headers
    outcome = client.post(
        "/fhir/Patient", json=patient, headers={"Prefer": "return=OperationOutcome"}
    )
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"


def _json(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)


def test_links_use_the_request_host_without_a_configured_base(database: Database) -> None:
    from gateway.api.app import create_app
    from gateway.config import Settings

    settings = Settings(database_url=database.url, auth_required=False)
    app = create_app(settings, database=database, migrate=False)
    with TestClient(app, base_url="http://gateway.example:8080") as local:
        response = local.post("/fhir/Patient", json=load_fixture("patient-aijala"))
        assert response.headers["location"].startswith("http://gateway.example:8080/fhir/Patient/")
        bundle = local.get("/fhir/Patient").json()
        assert bundle["link"][0]["url"].startswith("http://gateway.example:8080/fhir/Patient?")


def test_a_create_whose_commit_fails_answers_500_and_stores_nothing(
    client: TestClient, database: Database
) -> None:
    """The write's transaction fails at its commit (e.g. a full disk): the answer is an
    OperationOutcome with 500, never a 201 for something that was not stored."""

    def refuse(_conn: Any) -> None:
        raise OSError("disk full")

    patient = load_fixture("patient-virtanen")
    event.listen(database.engine, "commit", refuse)
    try:
        response = client.post("/fhir/Patient", json=patient)
    finally:
        event.remove(database.engine, "commit", refuse)
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    found = client.get("/fhir/Patient", params={"_summary": "count"}).json()
    assert found["total"] == 0
    assert client.post("/fhir/Patient", json=patient).status_code == 201
