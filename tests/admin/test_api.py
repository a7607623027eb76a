"""The admin REST API under /admin/api: JSON in and out, errors as OperationOutcome."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.admin.api import require_admin
from gateway.api.app import create_app
from gateway.config import Settings
from gateway.store.database import Database
from tests.admin import KELA_BUSINESS_ID, START, clean_admin_tables, days

API = "/admin/api"


@pytest.fixture
def api(settings: Settings, database: Database) -> Iterator[TestClient]:
    clean_admin_tables(database)
    app = create_app(settings, database=database, migrate=False)
    app.state.api.dependency_overrides[require_admin] = lambda: "test-admin"
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def register(api: TestClient) -> None:
    for body in (
        {
            "id": "kela",
            "name": "Kansaneläkelaitos",
            "type": "kela",
            "identifiers": [{"system": "urn:oid:1.2.246.10", "value": KELA_BUSINESS_ID}],
        },
        {
            "id": "esavo",
            "name": "Etelä-Savon hyvinvointialue",
            "type": "wellbeing-area",
            "municipalities": ["507", "491"],
        },
    ):
        response = api.post(f"{API}/organizations", json=body)
        assert response.status_code == 201, response.text


def agreement_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "kela",
        "recipient": "esavo",
        "categories": [
            {"resource_type": "ServiceRequest"},
            {"resource_type": "Consent", "category": "http://loinc.org|59284-0"},
        ],
        "purposes": ["concern-notification", "social-assistance"],
        "legal_basis": {"statute": "1301/2014 §35", "text": "Huoli-ilmoitus"},
        "consent_required": True,
        "valid_from": START.isoformat(),
        "valid_until": days(90).isoformat(),
    }
    body.update(overrides)
    return body


def test_organizations(api: TestClient) -> None:
    register(api)
    listed = api.get(f"{API}/organizations")
    assert listed.status_code == 200
    assert [o["id"] for o in listed.json()] == ["esavo", "kela"]
    one = api.get(f"{API}/organizations/esavo").json()
    assert one["municipalities"] == ["507", "491"]
    assert one["reference"] == "Organization/esavo"
    assert [o["id"] for o in api.get(f"{API}/organizations", params={"type": "kela"}).json()] == [
        "kela"
    ]
    assert api.get("/fhir/Organization/esavo").json()["name"] == "Etelä-Savon hyvinvointialue"
    missing = api.get(f"{API}/organizations/nope")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    duplicate = api.post(
        f"{API}/organizations", json={"id": "kela", "name": "Kela", "type": "kela"}
    )
    assert duplicate.status_code == 409
    served = api.post(
        f"{API}/organizations",
        json={
            "id": "esavo-2",
            "name": "Etelä-Savo",
            "type": "wellbeing-area",
            "municipalities": ["491"],
        },
    )
    assert served.status_code == 409
    assert served.json()["issue"][0]["diagnostics"] == (
        "Municipality 491 is already served by organisation 'esavo'"
    )


def test_invalid_organization_is_422_with_field_issues(api: TestClient) -> None:
    response = api.post(
        f"{API}/organizations",
        json={
            "id": "kela",
            "name": "Kela",
            "type": "kela",
            "identifiers": [{"system": "urn:oid:1.2.246.10", "value": "0246246-9"}],
        },
    )
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["identifiers[0].value"]
    assert api.get(f"{API}/organizations").json() == []
    assert api.get("/fhir/Organization/kela").status_code == 404


def test_agreement_lifecycle(api: TestClient) -> None:
    register(api)
    created = api.post(f"{API}/agreements", json=agreement_body())
    assert created.status_code == 201, created.text
    body = created.json()
    agreement_id = body["id"]
    assert body["status"] == "draft" and body["version"] == 1
    assert body["categories"][1] == {
        "resource_type": "Consent",
        "category": "http://loinc.org|59284-0",
    }
    url = f"{API}/agreements/{agreement_id}"
    first = api.post(f"{url}/approve", json={"as_org": "kela"})
    assert first.json()["status"] == "proposed"
    second = api.post(f"{url}/approve", json={"as_org": "esavo"})
    assert second.json()["status"] == "active"
    assert sorted(second.json()["approvals"]) == ["esavo", "kela"]
    again = api.post(f"{url}/approve", json={"as_org": "esavo"})
    assert again.status_code == 409
    assert again.json()["issue"][0]["code"] == "conflict"
    assert api.post(f"{url}/suspend", json={"reason": "review"}).json()["status"] == "suspended"
    assert api.post(f"{url}/resume").json()["status"] == "active"
    assert api.post(f"{url}/terminate").json()["status"] == "terminated"
    assert api.post(f"{url}/suspend").status_code == 409
    detail = api.get(url).json()
    assert detail["version"] == 6
    assert [(e["version"], e["action"], e["actor"]) for e in detail["history"]] == [
        (1, "create", "test-admin"),
        (2, "approve", "test-admin"),
        (3, "approve", "test-admin"),
        (4, "suspend", "test-admin"),
        (5, "resume", "test-admin"),
        (6, "terminate", "test-admin"),
    ]
    assert detail["history"][3]["detail"] == {"reason": "review"}
    assert api.get(f"{API}/agreements/nope").status_code == 404
    assert api.post(f"{API}/agreements/nope/approve", json={"as_org": "kela"}).status_code == 404


def test_list_agreements_with_filters(api: TestClient) -> None:
    register(api)
    first = api.post(f"{API}/agreements", json=agreement_body()).json()["id"]
    second = api.post(
        f"{API}/agreements", json=agreement_body(provider="esavo", recipient="kela")
    ).json()["id"]
    api.post(f"{API}/agreements/{first}/approve", json={"as_org": "kela"})
    api.post(f"{API}/agreements/{first}/approve", json={"as_org": "esavo"})

    def ids(**params: str) -> list[str]:
        response = api.get(f"{API}/agreements", params=params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()]

    assert ids() == [first, second]
    assert ids(provider="esavo") == [second]
    assert ids(recipient="esavo") == [first]
    assert ids(party="kela") == [first, second]
    assert ids(status="active") == [first]
    assert ids(status="draft") == [second]
    assert ids(status="expired", on_date=days(91).isoformat()) == [first, second]
    assert api.get(f"{API}/agreements", params={"status": "bogus"}).status_code == 400


def test_malformed_agreement_is_422_and_changes_nothing(api: TestClient) -> None:
    register(api)
    response = api.post(
        f"{API}/agreements",
        json=agreement_body(purposes=["concern-notification", "advertising"], recipient="nobody"),
    )
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["expression"] for i in outcome["issue"]] == [["recipient"], ["purposes[1]"]]
    assert api.get(f"{API}/agreements").json() == []
    missing_field = api.post(f"{API}/agreements", json={"provider": "kela"})
    assert missing_field.status_code == 400


def test_openapi_document_lists_the_admin_api(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert f"{API}/agreements/{{agreement_id}}/approve" in paths
    assert "post" in paths[f"{API}/organizations"]
