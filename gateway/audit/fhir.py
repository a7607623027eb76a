"""Log entries as FHIR R4 AuditEvents in the style of IHE Basic Audit Log Patterns
(BALP): RESTful activity with the patient as an entity, and disclosures with the
ISO 21089 lifecycle event ``disclose`` (auditevent.html, BALP "Basic Disclosure")."""

from __future__ import annotations

import base64
from typing import Any

from gateway.audit.log import DISCLOSURE, HETU_SYSTEM
from gateway.policy.rules import purpose_system
from gateway.search.values import format_instant

CLIENT_ID_SYSTEM = "https://silta.example.org/fhir/NamingSystem/client-id"
AGREEMENT_SYSTEM = "https://silta.example.org/fhir/NamingSystem/data-sharing-agreement"
_RESTFUL = "http://hl7.org/fhir/restful-interaction"
_LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
}
_OUTCOMES = {"success": "0", "denied": "4", "failure": "8"}


def _agent(
    reference: str | None, role: str, *, requestor: bool, client_id: str | None = None
) -> dict[str, Any]:
    who: dict[str, Any] = {}
    if reference:
        who["reference"] = reference
    if client_id:
        who["identifier"] = {"system": CLIENT_ID_SYSTEM, "value": client_id}
    return {
        "type": {"coding": [{"system": _PARTICIPATION, "code": role}]},
        "who": who,
        "requestor": requestor,
    }


def to_audit_event(entry: dict[str, Any]) -> dict[str, Any]:
    """One log entry (a row of ``audit_entry``) as an AuditEvent."""
    record: dict[str, Any] = entry["record"]
    action = str(entry["action"])
    disclosure = entry["kind"] == DISCLOSURE
    subtype = (
        [{"system": _RESTFUL, "code": action}]
        if action in _ACTIONS
        or action
        in (
            "search-type",
            "history",
            "transaction",
            "operation",
        )
        else []
    )
    if disclosure:
        subtype.append(
            {"system": _LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"}
        )
    organization = entry.get("organization")
    agents = [
        _agent(
            f"Organization/{organization}" if organization else None,
            "IRCP" if disclosure else "AUT",
            requestor=True,
            client_id=entry.get("client_id"),
        )
    ]
    if disclosure and entry.get("provider"):
        agents.append(_agent(f"Organization/{entry['provider']}", "CST", requestor=False))
    entities: list[dict[str, Any]] = []
    for patient in record.get("patients", []):
        what: dict[str, Any] = {"reference": f"Patient/{patient['id']}"}
        if patient.get("hetu"):
            what["identifier"] = {"system": HETU_SYSTEM, "value": patient["hetu"]}
        entities.append(
            {
                "what": what,
                "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    for reference in record.get("resources", []):
        entities.append(
            {
                "what": {"reference": reference},
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
            }
        )
    if record.get("query"):
        entities.append(
            {
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode(str(record["query"]).encode()).decode(),
            }
        )
    if disclosure and record.get("agreement"):
        detail = [
            {"type": key, "valueString": str(record[key])}
            for key in ("legal_basis", "consent", "rule")
            if record.get(key)
        ]
        entities.append(
            {
                "what": {"identifier": {"system": AGREEMENT_SYSTEM, "value": record["agreement"]}},
                "type": {"system": _ENTITY_TYPE, "code": "4", "display": "Other"},
                "description": "data-sharing agreement",
                **({"detail": detail} if detail else {}),
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"log-{entry['seq']}",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": subtype or None,
        "action": _ACTIONS.get(action, "E"),
        "recorded": format_instant(int(entry["at"])),
        "outcome": _OUTCOMES.get(str(entry["outcome"]), "8"),
        "agent": agents,
        "source": {
            "observer": {"display": "Silta gateway"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entities or None,
    }
    if entry.get("purpose"):
        event["purposeOfEvent"] = [
            {"coding": [{"system": purpose_system(), "code": entry["purpose"]}]}
        ]
    return {k: v for k, v in event.items() if v is not None}
