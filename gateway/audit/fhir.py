"""Log entries as FHIR R4 AuditEvents in the style of IHE Basic Audit Log Patterns
(BALP): RESTful activity with the patient as an entity, and disclosures with the
ISO 21089 lifecycle event ``disclose`` (auditevent.html, BALP "Basic Disclosure")."""

from __future__ import annotations

import base64
from typing import Any

from gateway.audit.log import HETU_SYSTEM
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
_RESTFUL_CODES = (*_ACTIONS, "search-type", "history", "transaction", "operation")
_DISCLOSE = {"system": _LIFECYCLE, "code": "disclose", "display": "Disclose Record Lifecycle Event"}


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


def _patient_entities(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entities = []
    for patient in patients:
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
    return entities


def _resource_entities(references: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "what": {"reference": reference},
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        }
        for reference in references
    ]


def _event(
    entry: dict[str, Any],
    event_id: str,
    subtype: list[dict[str, Any]],
    agents: list[dict[str, Any]],
    entities: list[dict[str, Any]],
    outcome: str,
) -> dict[str, Any]:
    action = str(entry["action"])
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id,
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "action": _ACTIONS.get(action, "E"),
        "recorded": format_instant(int(entry["at"])),
        "outcome": outcome,
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
    }
    if subtype:
        event["subtype"] = subtype
    if entities:
        event["entity"] = entities
    if entry.get("purpose"):
        event["purposeOfEvent"] = [
            {"coding": [{"system": purpose_system(), "code": entry["purpose"]}]}
        ]
    return event


def to_audit_events(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """One log entry (a row of ``audit_entry``) as AuditEvents: the access, then one
    disclosure event per organisation whose data the request disclosed."""
    record: dict[str, Any] = entry["record"]
    action = str(entry["action"])
    restful = [{"system": _RESTFUL, "code": action}] if action in _RESTFUL_CODES else []
    organization = entry.get("organization")
    requester = f"Organization/{organization}" if organization else None
    client_id = entry.get("client_id")
    entities = _patient_entities(record.get("patients", []))
    entities += _resource_entities(record.get("resources", []))
    if record.get("query"):
        entities.append(
            {
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode(str(record["query"]).encode()).decode(),
            }
        )
    events = [
        _event(
            entry,
            f"log-{entry['seq']}",
            restful,
            [_agent(requester, "AUT", requestor=True, client_id=client_id)],
            entities,
            _OUTCOMES.get(str(entry["outcome"]), "8"),
        )
    ]
    for index, disclosure in enumerate(record.get("disclosures", []), start=1):
        agreement_entity: dict[str, Any] = {
            "what": {"identifier": {"system": AGREEMENT_SYSTEM, "value": disclosure["agreement"]}},
            "type": {"system": _ENTITY_TYPE, "code": "4", "display": "Other"},
            "description": "data-sharing agreement",
        }
        detail = [
            {"type": key, "valueString": str(disclosure[key])}
            for key in ("legal_basis", "consent", "rule")
            if disclosure.get(key)
        ]
        if detail:
            agreement_entity["detail"] = detail
        events.append(
            _event(
                entry,
                f"log-{entry['seq']}-{index}",
                [*restful, _DISCLOSE],
                [
                    _agent(requester, "IRCP", requestor=True, client_id=client_id),
                    _agent(f"Organization/{disclosure['provider']}", "CST", requestor=False),
                ],
                [
                    *_patient_entities(disclosure.get("patients", [])),
                    *_resource_entities(disclosure.get("resources", [])),
                    agreement_entity,
                ],
                "0",
            )
        )
    return events
