"""The SMART endpoints are reachable through the application, and the admin CLI of the
`silta` command registers clients (SMART App Launch backend-services.html)."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient
from typer.testing import CliRunner

from gateway.cli import app as silta
from gateway.store.database import Database
from tests.auth import make_key


def test_smart_configuration_and_jwks_are_served(client: TestClient) -> None:
    configuration = client.get("/fhir/.well-known/smart-configuration")
    assert configuration.status_code == 200
    body = configuration.json()
    assert body["token_endpoint"] == "http://testserver/auth/token"
    assert "private_key_jwt" in body["token_endpoint_auth_methods_supported"]
    jwks = client.get("/auth/jwks")
    assert jwks.status_code == 200 and jwks.json()["keys"]
    refused = client.post("/auth/token", data={"grant_type": "password"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "unsupported_grant_type"


def test_silta_admin_client_add(tmp_path: Path) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(make_key().jwks()))
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    result = CliRunner().invoke(
        silta,
        [
            "admin", "client", "add", "--id", "kela-etuudet", "--org", "kela",
            "--jwks", str(jwks_file), "--scope", "system/ServiceRequest.crus",
            "--database", url,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(silta, ["admin", "client", "list", "--database", url])
    assert "kela-etuudet" in listed.output
    Database(url).dispose()


def test_silta_admin_org_and_agreement(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    runner = CliRunner()
    for org_id, name, kind in (
        ("kela", "Kela", "kela"),
        ("pirha", "Pirkanmaan HVA", "wellbeing-area"),
    ):
        added = runner.invoke(
            silta,
            [
                "admin",
                "org",
                "add",
                "--id",
                org_id,
                "--name",
                name,
                "--type",
                kind,
                "--database",
                url,
            ],
        )
        assert added.exit_code == 0, added.output
    agreement = runner.invoke(
        silta,
        [
            "admin", "agreement", "add", "--provider", "kela", "--recipient", "pirha",
            "--resource-type", "ServiceRequest", "--purpose", "concern-notification",
            "--legal-basis", "Social Welfare Act 1301/2014 §35", "--database", url,
        ],
    )  # fmt: skip
    assert agreement.exit_code == 0, agreement.output
    agreement_id = agreement.output.strip().splitlines()[-1].strip()
    for party in ("kela", "pirha"):
        approved = runner.invoke(
            silta, ["admin", "agreement", "approve", agreement_id, "--as", party, "--database", url]
        )
        assert approved.exit_code == 0, approved.output
    shown = runner.invoke(silta, ["admin", "agreement", "show", agreement_id, "--database", url])
    assert "active" in shown.output
