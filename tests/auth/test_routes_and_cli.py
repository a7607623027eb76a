"""The /auth routes and the SMART configuration over HTTP, and the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gateway.api.app import create_app
from gateway.auth.cli import client_app, key_app
from gateway.auth.clients import get_client, register_client
from gateway.auth.routes import auth_routes, smart_configuration
from gateway.auth.tokens import JWT_BEARER_ASSERTION, verify_access_token
from gateway.config import Settings
from gateway.store.database import Database
from tests.auth import FHIR_BASE, TOKEN_URL, clear_auth_tables, make_assertion, make_key


@pytest.fixture
def auth_client(database: Database) -> Iterator[TestClient]:
    clear_auth_tables(database)
    settings = Settings(
        database_url=database.url, public_base_url=FHIR_BASE, outbox_dispatcher=False
    )
    app = create_app(settings, database=database, migrate=False)
    app.router.routes.insert(
        0, Route("/fhir/.well-known/smart-configuration", smart_configuration, methods=["GET"])
    )
    app.router.routes.insert(0, Mount("/auth", routes=auth_routes()))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_smart_configuration(auth_client: TestClient) -> None:
    response = auth_client.get("/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    document = response.json()
    assert document["token_endpoint"] == TOKEN_URL
    assert document["jwks_uri"] == "http://testserver/auth/jwks"
    assert document["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert document["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert document["grant_types_supported"] == ["client_credentials"]
    assert "system/*.cruds" in document["scopes_supported"]
    assert document["capabilities"] == [
        "client-confidential-asymmetric",
        "permission-v2",
        "permission-v1",
    ]


def test_token_and_jwks(auth_client: TestClient) -> None:
    database: Database = auth_client.app.state.database  # type: ignore[attr-defined]
    key = make_key("ES384")
    register_client(
        database,
        client_id="kela",
        organization_id="kela",
        jwks=key.jwks(),
        scopes="system/Task.cruds",
    )
    now = int(time.time())
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER_ASSERTION,
        "client_assertion": make_assertion(key, "kela", now=now),
        "scope": "system/*.rs",
    }
    response = auth_client.post("/auth/token", data=form)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Task.rs"
    assert verify_access_token(database, body["access_token"], audience=FHIR_BASE).client_id == (
        "kela"
    )

    jwks = auth_client.get("/auth/jwks")
    assert jwks.status_code == 200
    assert jwks.headers["content-type"].startswith("application/jwk-set+json")
    signing = jwt.PyJWKSet.from_dict(jwks.json())
    kid = jwt.get_unverified_header(body["access_token"])["kid"]
    public = next(k for k in signing.keys if k.key_id == kid)
    claims = jwt.decode(body["access_token"], public.key, algorithms=["ES384"], audience=FHIR_BASE)
    assert claims["client_id"] == "kela"

    replay = auth_client.post("/auth/token", data=form)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert replay.headers["cache-control"] == "no-store"


def test_token_request_errors(auth_client: TestClient) -> None:
    wrong_grant = auth_client.post("/auth/token", data={"grant_type": "password"})
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    as_json = auth_client.post("/auth/token", json={"grant_type": "client_credentials"})
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    twice = auth_client.post(
        "/auth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 400 and "more than once" in twice.json()["error_description"]
    assert auth_client.get("/auth/token").status_code == 405


def test_cli(tmp_path: Path, database: Database) -> None:
    clear_auth_tables(database)
    runner = CliRunner()
    url = database.url
    key = make_key("RS384", kid="rsa-1")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(key.jwks()))
    args = ["--id", "hva", "--org", "hva-org", "--jwks", str(jwks_file)]
    result = runner.invoke(
        client_app,
        ["add", *args, "--scope", "system/*.rs", "--purpose", "TREAT", "--database", url],
    )
    assert result.exit_code == 0, result.output
    assert "registered client hva" in result.output and "rsa-1" in result.output
    client = get_client(database, "hva")
    assert client is not None and client.default_purpose == "TREAT"

    again = runner.invoke(client_app, ["add", *args, "--scope", "system/*.rs", "--database", url])
    assert again.exit_code == 1 and "already registered" in again.output

    private_file = tmp_path / "private.json"
    private_file.write_text(json.dumps({"keys": [key.private_jwk()]}))
    bad_args = ["--id", "x", "--org", "o", "--jwks", str(private_file), "--database", url]
    bad = runner.invoke(client_app, ["add", *bad_args, "--scope", "system/*.rs"])
    assert bad.exit_code == 1 and "private key material" in bad.output

    listed = runner.invoke(client_app, ["list", "--database", url])
    assert listed.exit_code == 0 and "hva-org" in listed.output

    disabled = runner.invoke(client_app, ["disable", "hva", "--database", url])
    assert disabled.exit_code == 0 and "disabled" in disabled.output
    assert get_client(database, "hva") is not None
    assert runner.invoke(client_app, ["disable", "nobody", "--database", url]).exit_code == 1

    rotated = runner.invoke(key_app, ["rotate", "--algorithm", "RS384", "--database", url])
    assert rotated.exit_code == 0 and "(RS384) is active" in rotated.output
    assert runner.invoke(key_app, ["rotate", "--algorithm", "none", "--database", url]).exit_code
    keys = runner.invoke(key_app, ["list", "--database", url])
    assert keys.exit_code == 0 and "RS384" in keys.output
