"""The trust layer end to end over HTTP: tokens, custodianship, agreements, consents,
redaction, and that no search, include, chain, count or history reveals a denied
resource."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from gateway.admin import agreements as svc
from gateway.store.database import Database
from tests.fixtures.hetu import make_test_hetu
from tests.policy import (
    CUSTODIAN_SYSTEM,
    Gateway,
    concern_notification,
    consent,
    patient,
    trust_gateway,
)


@pytest.fixture
def gw(database: Database) -> Iterator[Gateway]:
    with trust_gateway(database) as gateway:
        yield gateway


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode
    )


def _kela_case(gw: Gateway) -> tuple[str, str]:
    """A Patient and a concern notification, both held by Kela."""
    pat = gw.create("kela", patient(make_test_hetu(date(1990, 5, 17), 901)))
    sr = gw.create("kela", concern_notification(pat["id"]))
    return pat["id"], sr["id"]


# -- authentication ----------------------------------------------------------------


def test_every_fhir_request_but_metadata_needs_a_token(gw: Gateway) -> None:
    client = gw.client
    assert client.get("/fhir/metadata").status_code == 200
    assert client.get("/fhir/.well-known/smart-configuration").status_code == 200
    for method, path in (
        ("GET", "/fhir/Patient"),
        ("GET", "/fhir/Patient/x"),
        ("POST", "/fhir/Patient"),
        ("POST", "/fhir"),
        ("GET", "/fhir/_history"),
    ):
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"
    forged = gw.token("kela")[:-4] + "AAAA"
    response = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_scopes_decide_interactions(gw: Gateway) -> None:
    read_only = gw.headers("kela", scope="system/Patient.rs")
    assert gw.client.get("/fhir/Patient", headers=read_only).status_code == 200
    response = gw.client.post(
        "/fhir/Patient", json=patient(make_test_hetu(date(1980, 1, 1), 902)), headers=read_only
    )
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert gw.client.get("/fhir/Task", headers=read_only).status_code == 403
    v1 = gw.headers("kela", scope="system/*.read")
    assert gw.client.get("/fhir/Task", headers=v1).status_code == 200
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient(make_test_hetu(date(1980, 1, 1), 903)),
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    assert gw.client.post("/fhir", json=bundle, headers=v1).status_code == 403
    metadata = gw.client.get("/fhir/metadata").json()
    security = metadata["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_unknown_purpose_is_a_bad_request(gw: Gateway) -> None:
    response = gw.client.get("/fhir/Patient", headers=gw.headers("pirha", purpose="marketing"))
    assert response.status_code == 400
    assert "concern-notification" in response.json()["issue"][0]["diagnostics"]


# -- custodianship ---------------------------------------------------------------------


def test_custodian_is_recorded_immutable_and_searchable(gw: Gateway) -> None:
    created = gw.create("kela", patient(make_test_hetu(date(1975, 3, 3), 904)))
    tags = created["meta"]["tag"]
    assert {"system": CUSTODIAN_SYSTEM, "code": "kela"} in tags
    forged = dict(created)
    forged["meta"] = {"tag": [{"system": CUSTODIAN_SYSTEM, "code": "pirha"}]}
    updated = gw.put("kela", forged)
    assert [t for t in updated["meta"]["tag"] if t["system"] == CUSTODIAN_SYSTEM] == [
        {"system": CUSTODIAN_SYSTEM, "code": "kela"}
    ]
    found = gw.client.get(
        f"/fhir/Patient?_tag={CUSTODIAN_SYSTEM}|kela", headers=gw.headers("kela")
    ).json()
    assert _ids(found) == [f"Patient/{created['id']}"]
    # The organisations themselves are directory data, held by themselves.
    org = gw.client.get("/fhir/Organization/pirha", headers=gw.headers("kela")).json()
    assert {"system": CUSTODIAN_SYSTEM, "code": "pirha"} in org["meta"]["tag"]


# -- agreements ---------------------------------------------------------------------------


def test_without_agreement_another_organisation_sees_nothing(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    pirha = gw.headers("pirha", purpose="concern-notification")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 404
    assert gw.client.get(f"/fhir/Patient/{pat_id}", headers=pirha).status_code == 404
    search = gw.client.get("/fhir/ServiceRequest?_total=accurate", headers=pirha).json()
    assert search["total"] == 0 and "entry" not in search
    count = gw.client.get("/fhir/ServiceRequest?_summary=count", headers=pirha).json()
    assert count["total"] == 0
    # The custodian sees its own data.
    kela = gw.headers("kela")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=kela).status_code == 200


def test_agreement_discloses_covered_types_for_its_purpose_only(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    gw.agree()
    pirha = gw.headers("pirha", purpose="concern-notification")
    response = gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha)
    assert response.status_code == 200
    # Patient is not among the agreement's categories.
    assert gw.client.get(f"/fhir/Patient/{pat_id}", headers=pirha).status_code == 404
    other_purpose = gw.headers("pirha", purpose="care-coordination")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=other_purpose).status_code == 404
    no_purpose = gw.headers("pirha")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=no_purpose).status_code == 404
    # The agreement is one-way: youth outreach and the reverse direction see nothing.
    etsiva = gw.headers("etsiva-tampere", purpose="concern-notification")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=etsiva).status_code == 404


def test_suspended_or_terminated_agreement_stops_disclosure(gw: Gateway) -> None:
    _, sr_id = _kela_case(gw)
    agreement_id = gw.agree()
    pirha = gw.headers("pirha", purpose="concern-notification")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 200
    svc.suspend(gw.database, agreement_id, actor="test")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 404
    svc.resume(gw.database, agreement_id, actor="test")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 200
    svc.terminate(gw.database, agreement_id, actor="test")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 404


def test_category_narrowed_agreement(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    other = concern_notification(pat_id)
    other["category"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "410606002"}]}]
    other_id = gw.create("kela", other)["id"]
    gw.agree(
        categories=(
            svc.Category(
                "ServiceRequest",
                "https://silta.example.org/fhir/CodeSystem/kela-request-category",
                "concern-notification",
            ),
        )
    )
    pirha = gw.headers("pirha", purpose="concern-notification")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 200
    assert gw.client.get(f"/fhir/ServiceRequest/{other_id}", headers=pirha).status_code == 404
    search = gw.client.get("/fhir/ServiceRequest?_total=accurate", headers=pirha).json()
    assert _ids(search) == [f"ServiceRequest/{sr_id}"] and search["total"] == 1


# -- consent --------------------------------------------------------------------------------


def test_consent_required_agreement_follows_the_consent(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    gw.agree(
        consent_required=True, categories=(svc.Category("ServiceRequest"), svc.Category("Patient"))
    )
    pirha = gw.headers("pirha", purpose="concern-notification")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 404
    given = gw.create("kela", consent(pat_id, "pirha", "concern-notification"))
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 200
    assert gw.client.get(f"/fhir/Patient/{pat_id}", headers=pirha).status_code == 200
    # Consent for another purpose or another actor does not count.
    other = gw.headers("pirha", purpose="care-coordination")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=other).status_code == 404
    # Revoking it (status inactive) stops disclosure at once.
    revoked = dict(given, status="inactive")
    gw.put("kela", revoked)
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 404
    search = gw.client.get("/fhir/ServiceRequest?_summary=count", headers=pirha).json()
    assert search["total"] == 0


def test_deny_provision_beats_permit(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    gw.agree(consent_required=True)
    pirha = gw.headers("pirha", purpose="concern-notification")
    gw.create("kela", consent(pat_id, "pirha", "concern-notification"))
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 200
    denial = consent(pat_id, "pirha", "concern-notification")
    denial["provision"]["type"] = "deny"
    gw.create("kela", denial)
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 404


def test_consent_outside_its_period_does_not_count(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    gw.agree(consent_required=True)
    expired = consent(
        pat_id, "pirha", "concern-notification", period={"start": "2020-01-01", "end": "2021-01-01"}
    )
    gw.create("kela", expired)
    pirha = gw.headers("pirha", purpose="concern-notification")
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 404


# -- redaction ------------------------------------------------------------------------------


def test_concern_notification_without_consent_carries_no_description(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    gw.agree()
    pirha = gw.headers("pirha", purpose="concern-notification")
    shown = gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).json()
    assert "note" not in shown
    assert all("text" not in reason for reason in shown.get("reasonCode", []))
    in_search = gw.client.get("/fhir/ServiceRequest", headers=pirha).json()["entry"][0]["resource"]
    assert "note" not in in_search
    # With the client's consent the description is disclosed.
    gw.create("kela", consent(pat_id, "pirha", "concern-notification"))
    shown = gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).json()
    assert shown["note"][0]["text"].startswith("Asiakas")
    # The custodian always sees everything.
    own = gw.client.get(f"/fhir/ServiceRequest/{sr_id}", headers=gw.headers("kela")).json()
    assert "note" in own


def test_turvakielto_hides_address_and_telecom(gw: Gateway) -> None:
    protected = patient(
        make_test_hetu(date(2001, 7, 9), 905),
        meta={
            "security": [
                {
                    "system": "https://hl7.fi/fhir/finnish-base-profiles/CodeSystem/fi-base-security-label-cs",
                    "code": "TURVAKIELTO",
                }
            ]
        },
    )
    pat_id = gw.create("kela", protected)["id"]
    gw.agree(categories=(svc.Category("Patient"),))
    pirha = gw.headers("pirha", purpose="concern-notification")
    shown = gw.client.get(f"/fhir/Patient/{pat_id}", headers=pirha).json()
    assert "address" not in shown and "telecom" not in shown
    assert shown["name"][0]["family"] == "Virtanen"
    own = gw.client.get(f"/fhir/Patient/{pat_id}", headers=gw.headers("kela")).json()
    assert own["address"][0]["city"] == "Tampere"


# -- no path reveals a denied resource ------------------------------------------------------


def test_includes_chains_has_history_and_counts_reveal_nothing(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{sr_id}"},
        "for": {"reference": f"Patient/{pat_id}"},
    }
    task_id = gw.create("kela", task)["id"]
    # Only Tasks are shared; the ServiceRequest and the Patient stay with Kela.
    gw.agree(categories=(svc.Category("Task"),))
    pirha = gw.headers("pirha", purpose="concern-notification")

    def get(url: str) -> dict[str, Any]:
        found: dict[str, Any] = gw.client.get(url, headers=pirha).json()
        return found

    bundle = get("/fhir/Task?_include=Task:focus&_include=Task:patient")
    assert _ids(bundle) == [f"Task/{task_id}"]
    assert _ids(bundle, "include") == []
    assert _ids(get("/fhir/Task?_revinclude=Task:focus")) == [f"Task/{task_id}"]
    hetu = get(f"/fhir/Task/{task_id}")["for"]["reference"]
    assert hetu == f"Patient/{pat_id}"
    # A chain or _has through a hidden resource matches nothing.
    assert _ids(get("/fhir/Task?patient.name=Virtanen")) == []
    assert _ids(get("/fhir/Task?focus:ServiceRequest.status=active")) == []
    assert _ids(get("/fhir/Patient?_has:Task:patient:status=requested")) == []
    assert get("/fhir/ServiceRequest?_summary=count")["total"] == 0
    assert gw.client.get(f"/fhir/ServiceRequest/{sr_id}/_history", headers=pirha).status_code == 404
    history = get("/fhir/_history")
    assert {e["fullUrl"].rsplit("/", 2)[-2] for e in history.get("entry", [])} <= {
        "Task",
        "Organization",
    }
    type_history = get("/fhir/ServiceRequest/_history")
    assert "entry" not in type_history
    # The custodian's own view is complete.
    kela = gw.client.get(
        "/fhir/Task?_include=Task:focus&_include=Task:patient", headers=gw.headers("kela")
    ).json()
    assert _ids(kela, "include") == [f"Patient/{pat_id}", f"ServiceRequest/{sr_id}"]


def test_conditional_create_does_not_find_hidden_resources(gw: Gateway) -> None:
    hetu = make_test_hetu(date(1969, 12, 24), 906)
    kela_patient = gw.create("kela", patient(hetu))
    response = gw.client.post(
        "/fhir/Patient",
        json=patient(hetu),
        headers={**gw.headers("pirha"), "If-None-Exist": f"identifier=urn:oid:1.2.246.21|{hetu}"},
    )
    assert response.status_code == 201
    assert response.json()["id"] != kela_patient["id"]


# -- writes ---------------------------------------------------------------------------------


def test_writes_to_another_organisations_resource(gw: Gateway) -> None:
    pat_id, sr_id = _kela_case(gw)
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{pat_id}"},
    }
    task = gw.create("kela", task)
    pirha = gw.headers("pirha", purpose="concern-notification")
    accepted = dict(task, status="accepted")
    assert (
        gw.client.put(f"/fhir/Task/{task['id']}", json=accepted, headers=pirha).status_code == 403
    )
    gw.agree()  # read only
    response = gw.client.put(f"/fhir/Task/{task['id']}", json=accepted, headers=pirha)
    assert response.status_code == 403
    assert "not permitted" in response.json()["issue"][0]["diagnostics"]
    gw.agree(write_allowed=True, categories=(svc.Category("Task"),))
    response = gw.client.put(f"/fhir/Task/{task['id']}", json=accepted, headers=pirha)
    assert response.status_code == 200, response.text
    # The custodian stays Kela.
    tags = response.json()["meta"]["tag"]
    assert {"system": CUSTODIAN_SYSTEM, "code": "kela"} in tags
    patch = [{"op": "replace", "path": "/status", "value": "in-progress"}]
    response = gw.client.patch(
        f"/fhir/Task/{task['id']}",
        json=patch,
        headers={**pirha, "Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 200
    # Deleting the ServiceRequest (no write grant for it) is refused.
    assert gw.client.delete(f"/fhir/ServiceRequest/{sr_id}", headers=pirha).status_code == 403
    # Directory data of another organisation is not writable.
    org = gw.client.get("/fhir/Organization/kela", headers=pirha).json()
    assert gw.client.put("/fhir/Organization/kela", json=org, headers=pirha).status_code == 403


def test_transaction_entries_pass_the_same_policy(gw: Gateway) -> None:
    _, sr_id = _kela_case(gw)
    pirha = gw.headers("pirha", purpose="concern-notification")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"ServiceRequest/{sr_id}"}},
            {"request": {"method": "GET", "url": "ServiceRequest"}},
        ],
    }
    result = gw.client.post("/fhir", json=bundle, headers=pirha).json()
    assert result["entry"][0]["response"]["status"].startswith("404")
    assert "entry" not in result["entry"][1]["resource"]
