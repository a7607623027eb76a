"""The access and disclosure log: what is recorded, the hash chain and tamper detection,
the AuditEvent view, the client's extract, explanations, and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from gateway.admin import agreements as svc
from gateway.audit.log import verify
from gateway.cli import app as cli_app
from gateway.fhir.validation import validate_resource
from gateway.store.database import Database
from tests.fixtures.hetu import make_test_hetu
from tests.policy import Gateway, concern_notification, consent, patient, trust_gateway

HETU = make_test_hetu(date(1988, 2, 29), 912)


@pytest.fixture
def gw(database: Database) -> Iterator[Gateway]:
    with trust_gateway(database) as gateway:
        yield gateway


def _case(gw: Gateway) -> tuple[str, str]:
    pat_id = gw.create("kela", patient(HETU))["id"]
    sr_id = gw.create("kela", concern_notification(pat_id))["id"]
    gw.agree(
        categories=(svc.Category("ServiceRequest"), svc.Category("Patient")), consent_required=True
    )
    gw.create("kela", consent(pat_id, "pirha", "concern-notification"))
    return pat_id, sr_id


def _admin(gw: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token('kela', scope='admin')}"}


def test_accesses_and_disclosures_are_logged(gw: Gateway) -> None:
    pat_id, sr_id = _case(gw)
    pirha = gw.headers("pirha", purpose="concern-notification")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 200
    assert (
        gw.client.get(
            "/fhir/Patient?identifier=urn:oid:1.2.246.21|" + HETU, headers=pirha
        ).status_code
        == 200
    )
    assert gw.client.get("/fhir/ServiceRequest/unknown", headers=pirha).status_code == 404

    extract = gw.client.get(f"/admin/api/audit/client/{HETU}", headers=_admin(gw)).json()
    actions = [(a["organization"], a["action"]) for a in extract["accesses"]]
    assert ("pirha", "read") in actions and ("pirha", "search-type") in actions
    assert ("kela", "create") in actions
    disclosures = extract["disclosures"]
    assert {d["provider"] for d in disclosures} == {"kela"}
    assert {d["recipient"] for d in disclosures} == {"pirha"}
    read = next(d for d in disclosures if f"ServiceRequest/{sr_id}" in d["resources"])
    assert read["purpose"] == "concern-notification"
    assert read["legal_basis"] == "1301/2014 §35"
    assert read["consent"] and read["agreement"]
    assert read["client"] == "pirha-system"
    # A failed read is logged as an access with its outcome.
    gw.flush_log()
    events = gw.client.get("/admin/api/audit/events?organization=pirha", headers=_admin(gw)).json()
    outcomes = {e["resource"]["outcome"] for e in events["entry"]}
    assert {"0", "8"} <= outcomes
    for entry in events["entry"]:
        assert validate_resource(entry["resource"], expected_type="AuditEvent") == []
    disclose = gw.client.get(
        f"/admin/api/audit/events?kind=disclosure&patient={HETU}", headers=_admin(gw)
    ).json()["entry"]
    assert disclose
    event = disclose[0]["resource"]
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle",
        "code": "disclose",
        "display": "Disclose Record Lifecycle Event",
    } in event["subtype"]
    patients = [e for e in event["entity"] if e.get("role", {}).get("code") == "1"]
    assert patients[0]["what"]["identifier"]["value"] == HETU
    assert patients[0]["what"]["reference"] == f"Patient/{pat_id}"


def test_admin_log_endpoints_need_the_admin_scope(gw: Gateway) -> None:
    response = gw.client.get(f"/admin/api/audit/client/{HETU}", headers=gw.headers("pirha"))
    assert response.status_code == 403
    assert gw.client.get("/admin/api/audit/events").status_code == 401


def test_hash_chain_detects_tampering(gw: Gateway, database: Database) -> None:
    _case(gw)
    gw.client.get("/fhir/Patient", headers=gw.headers("pirha", purpose="concern-notification"))
    gw.flush_log()
    result = verify(database)
    assert result.ok and result.entries >= 4
    assert gw.client.get("/admin/api/audit/verify", headers=_admin(gw)).json()["ok"] is True
    # The database refuses changes to the log.
    with pytest.raises(Exception, match="append-only"), database.write() as conn:
        conn.execute(text("UPDATE audit_entry SET organization = 'x' WHERE seq = 2"))
    with pytest.raises(Exception, match="append-only"), database.write() as conn:
        conn.execute(text("DELETE FROM audit_entry WHERE seq = 2"))
    # Someone who removes the protection and edits an entry is found out.
    with database.write() as conn:
        if database.is_postgresql:
            conn.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_entry_no_update"))
        conn.execute(text("UPDATE audit_entry SET organization = 'etsiva-tampere' WHERE seq = 2"))
        if database.is_postgresql:
            conn.execute(text("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only"))
    result = verify(database)
    assert not result.ok and result.broken_at == 2
    assert "changed" in result.problem


def test_explain(gw: Gateway) -> None:
    pat_id, sr_id = _case(gw)
    url = "/admin/api/decisions/explain"
    answer = gw.client.get(
        url,
        params={
            "requester": "pirha",
            "resource": f"ServiceRequest/{sr_id}",
            "purpose": "concern-notification",
        },
        headers=_admin(gw),
    ).json()
    assert answer["decision"] == "permit"
    assert answer["rule"] == "agreement-and-consent"
    assert answer["agreement"] and answer["consent"]
    assert answer["custodian"] == "kela" and answer["client"] == f"Patient/{pat_id}"
    denied = gw.client.get(
        url,
        params={
            "requester": "etsiva-tampere",
            "resource": f"ServiceRequest/{sr_id}",
            "purpose": "concern-notification",
        },
        headers=_admin(gw),
    ).json()
    assert denied["decision"] == "deny"
    assert "no agreement in force from kela to etsiva-tampere" in denied["reason"]
    assert (
        gw.client.get(
            url, params={"requester": "pirha", "resource": "nonsense"}, headers=_admin(gw)
        ).status_code
        == 400
    )
    assert (
        gw.client.get(
            url, params={"requester": "pirha", "resource": "Task/none"}, headers=_admin(gw)
        ).status_code
        == 404
    )


def test_cli_verify_and_client_extract(gw: Gateway, database: Database) -> None:
    _case(gw)
    gw.client.get(
        "/fhir/ServiceRequest", headers=gw.headers("pirha", purpose="concern-notification")
    )
    gw.flush_log()
    runner = CliRunner()
    result = runner.invoke(cli_app, ["admin", "audit", "verify", "--database", database.url])
    assert result.exit_code == 0, result.output
    assert "hash chain intact" in result.output
    result = runner.invoke(cli_app, ["admin", "audit", "client", HETU, "--database", database.url])
    assert result.exit_code == 0, result.output
    assert "disclosure" in result.output and "pirha" in result.output
