"""A gateway with the trust layer on, three organisations and a client of each, for the
tests of enforcement, explanations and the access log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from starlette.testclient import TestClient

from gateway.admin import agreements as svc
from gateway.api.app import create_app
from gateway.auth.clients import register_client
from gateway.auth.tokens import JWT_BEARER_ASSERTION
from gateway.config import Settings
from gateway.store.database import Database
from tests.admin import register_parties
from tests.auth import FHIR_BASE, TOKEN_URL, ClientKey, make_assertion, make_key

ORGANIZATIONS = ("kela", "pirha", "etsiva-tampere")
CUSTODIAN_SYSTEM = "https://silta.example.org/fhir/CodeSystem/custodian"
CONSENT_CATEGORY = {"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}
PURPOSE_SYSTEM = "https://silta.example.org/fhir/CodeSystem/purpose-of-use"
CONCERN = {
    "system": "https://silta.example.org/fhir/CodeSystem/kela-request-category",
    "code": "concern-notification",
}


class Gateway:
    """The application over ``database`` with every organisation's client registered."""

    def __init__(self, client: TestClient, database: Database, keys: dict[str, ClientKey]) -> None:
        self.client = client
        self.database = database
        self.keys = keys
        self._tokens: dict[tuple[str, str], str] = {}

    def token(self, org: str, scope: str = "system/*.cruds") -> str:
        if (org, scope) not in self._tokens:
            assertion = make_assertion(self.keys[org], f"{org}-system", now=int(time.time()))
            response = self.client.post(
                "/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "scope": scope,
                    "client_assertion_type": JWT_BEARER_ASSERTION,
                    "client_assertion": assertion,
                },
            )
            assert response.status_code == 200, response.text
            self._tokens[(org, scope)] = response.json()["access_token"]
        return self._tokens[(org, scope)]

    def headers(
        self, org: str, purpose: str | None = None, scope: str = "system/*.cruds"
    ) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token(org, scope)}"}
        if purpose:
            headers["X-Purpose-Of-Use"] = purpose
        return headers

    def create(self, org: str, resource: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(
            f"/fhir/{resource['resourceType']}", json=resource, headers=self.headers(org)
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def put(self, org: str, resource: dict[str, Any]) -> dict[str, Any]:
        response = self.client.put(
            f"/fhir/{resource['resourceType']}/{resource['id']}",
            json=resource,
            headers=self.headers(org),
        )
        assert response.status_code in (200, 201), response.text
        stored: dict[str, Any] = response.json()
        return stored

    def agree(self, **overrides: Any) -> str:
        """An active agreement (both parties approved); Kela → Pirkanmaa by default."""
        values: dict[str, Any] = {
            "provider": "kela",
            "recipient": "pirha",
            "categories": (svc.Category("ServiceRequest"), svc.Category("Task")),
            "purposes": ("concern-notification",),
            "legal_basis": svc.LegalBasis("1301/2014 §35", "Notification of need"),
            "consent_required": False,
            "write_allowed": False,
            "valid_from": date.today() - timedelta(days=30),
            "valid_until": None,
        }
        values.update(overrides)
        agreement = svc.create_agreement(
            self.database, terms=svc.AgreementTerms(**values), actor="test"
        )
        svc.approve(self.database, agreement.id, as_org=values["provider"], actor="test")
        svc.approve(self.database, agreement.id, as_org=values["recipient"], actor="test")
        return agreement.id

    def flush_log(self) -> None:
        self.client.app.state.audit.flush()  # type: ignore[attr-defined]


@contextmanager
def trust_gateway(database: Database, *, service_threads: bool | None = None) -> Iterator[Gateway]:
    register_parties(database)
    keys = {org: make_key("ES384") for org in ORGANIZATIONS}
    for org, key in keys.items():
        register_client(
            database,
            client_id=f"{org}-system",
            organization_id=org,
            jwks=key.jwks(),
            scopes="system/*.cruds",
            is_admin=org == "kela",
        )
    settings = Settings(
        database_url=database.url,
        public_base_url=FHIR_BASE,
        outbox_dispatcher=False,
        service_threads=service_threads,
    )
    app = create_app(settings, database=database, migrate=False)
    assert TOKEN_URL.startswith("http://testserver")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Gateway(client, database, keys)


def patient(hetu: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.246.21", "value": hetu}],
        "name": [{"family": "Virtanen", "given": ["Aino"]}],
        "address": [{"line": ["Hämeenkatu 1"], "city": "Tampere"}],
        "telecom": [{"system": "phone", "value": "+358401234567"}],
        **extra,
    }


def concern_notification(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [CONCERN]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{"text": "Vuokrarästejä ja toimeentulotuen perusosaa alennettu"}],
        "note": [{"text": "Asiakas kertoi tilanteestaan puhelimessa"}],
        "requester": {"reference": "Organization/kela"},
        "performer": [{"reference": "Organization/pirha"}],
    }


def consent(
    patient_id: str, actor: str, purpose: str, status: str = "active", **provision: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [CONSENT_CATEGORY],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": f"Organization/{actor}"},
                }
            ],
            "purpose": [{"system": PURPOSE_SYSTEM, "code": purpose}],
            **provision,
        },
    }
