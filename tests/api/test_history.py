"""history at instance, type and system level, with paging (R4 http.html §3.1.0.7)."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.fixtures import load_fixture


def test_instance_type_and_system_history(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=load_fixture("patient-aijala")).json()
    url = f"/fhir/Patient/{created['id']}"
    client.put(url, json={**created, "gender": "other"})
    client.post("/fhir/Organization", json=load_fixture("kela"))
    instance = client.get(f"{url}/_history").json()
    assert instance["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in instance["entry"]] == ["2", "1"]
    assert [e["request"]["method"] for e in instance["entry"]] == ["PUT", "POST"]
    assert instance["entry"][0]["response"]["etag"] == 'W/"2"'
    type_history = client.get("/fhir/Patient/_history").json()
    assert len(type_history["entry"]) == 2
    system = client.get("/fhir/_history").json()
    assert len(system["entry"]) == 3
    assert system["entry"][0]["resource"]["resourceType"] == "Organization"
    assert client.get("/fhir/Patient/nobody/_history").status_code == 404


def test_history_paging_and_since(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=load_fixture("patient-aijala")).json()
    url = f"/fhir/Patient/{created['id']}"
    for gender in ("male", "female", "other", "unknown", "male"):
        client.put(url, json={**created, "gender": gender})
    seen: list[str] = []
    page = client.get(f"{url}/_history", params={"_count": 2}).json()
    while True:
        seen += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
        next_link = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not next_link:
            break
        client.put(url, json={**created, "birthDate": f"19{50 + len(seen)}-01-01"})
        page = client.get(next_link[0].replace("http://testserver", "")).json()
    assert seen == ["6", "5", "4", "3", "2", "1"]
    since = client.get(f"{url}/_history", params={"_since": "2000-01-01"}).json()
    assert len(since["entry"]) >= 6
    future = client.get(f"{url}/_history", params={"_since": "2999-01-01"}).json()
    assert future.get("entry") is None
    assert client.get(f"{url}/_history", params={"_since": "yesterday"}).status_code == 400
    at = client.get(f"{url}/_history", params={"_at": "2999"}).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["8"]
