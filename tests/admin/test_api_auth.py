"""The admin API answers only tokens with the ``admin`` scope (issue: trust layer;
RFC 6750 §3.1 error codes)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.api.app import create_app
from gateway.auth.clients import register_client
from gateway.config import Settings
from gateway.store.database import Database
from tests.admin import clean_admin_tables
from tests.auth import clear_auth_tables, make_assertion, make_key


@pytest.fixture
def app_client(settings: Settings, database: Database) -> Iterator[TestClient]:
    clean_admin_tables(database)
    clear_auth_tables(database)
    with TestClient(create_app(settings, database=database, migrate=False)) as client:
        yield client


def token_for(client: TestClient, database: Database, client_id: str, *, admin: bool) -> str:
    key = make_key()
    register_client(
        database,
        client_id=client_id,
        organization_id="kela",
        jwks=key.jwks(),
        scopes="system/*.rs",
        is_admin=admin,
    )
    scope = "system/*.rs admin" if admin else "system/*.rs"
    response = client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": make_assertion(key, client_id, now=int(time.time())),
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_admin_api_requires_an_admin_token(app_client: TestClient, database: Database) -> None:
    missing = app_client.get("/admin/api/organizations")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["resourceType"] == "OperationOutcome"
    forged = app_client.get(
        "/admin/api/organizations", headers={"Authorization": "Bearer not.a.token"}
    )
    assert forged.status_code == 401
    plain = token_for(app_client, database, "kela-etuudet", admin=False)
    forbidden = app_client.get(
        "/admin/api/organizations", headers={"Authorization": f"Bearer {plain}"}
    )
    assert forbidden.status_code == 403
    admin = token_for(app_client, database, "silta-operator", admin=True)
    allowed = app_client.get(
        "/admin/api/organizations", headers={"Authorization": f"Bearer {admin}"}
    )
    assert allowed.status_code == 200, allowed.text
