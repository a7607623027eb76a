"""The compiled FHIRPath subset agrees with fhirpathpy (fhirpath.html, search.html §3.1.1)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.fhir.resource_types import STORED_TYPES
from gateway.search.fhirpath import (
    compile_path,
    fhirpathpy_evaluator,
    is_compiled,
    leading_member,
    parse_reference,
)
from gateway.search.registry import params_for

HETU_SYSTEM = "urn:oid:1.2.246.21"
HETU_CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
BASE = "https://fhir.silta.example.fi/fhir"
SCT = "http://snomed.info/sct"

# Test HETUs: individual numbers 900-999.
HETU_VIRTANEN = "010190-900P"
HETU_KORHONEN = "280255-9340"
HETU_NIEMINEN = "020304A955J"
HETU_MAKINEN = "150385-912E"

# --------------------------------------------------------------------------- resources

PATIENT_VIRTANEN: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-virtanen",
    "meta": {
        "versionId": "2",
        "lastUpdated": "2025-02-01T09:00:00Z",
        "source": "https://kela.example.fi/fhir",
        "profile": ["https://silta.example.fi/fhir/StructureDefinition/silta-patient"],
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ],
        "tag": [{"system": "https://silta.example.fi/tags", "code": "kela-origin"}],
    },
    "identifier": [
        {"use": "official", "system": HETU_SYSTEM, "value": HETU_VIRTANEN},
        {
            "system": "urn:oid:1.2.246.10.2345678.10.1",
            "value": "ASIAKAS-4411",
            "type": {"text": "Asiakasnumero"},
        },
    ],
    "active": True,
    "name": [
        {
            "use": "official",
            "family": "Virtanen",
            "given": ["Aino", "Maria"],
            "prefix": ["FM"],
        },
        {"use": "nickname", "text": "Ainski"},
    ],
    "telecom": [
        {"system": "phone", "value": "+358 40 123 4567", "use": "mobile", "rank": 1},
        {"system": "email", "value": "aino.virtanen@example.fi"},
        {"system": "sms", "value": "+358401234567"},
    ],
    "gender": "female",
    "birthDate": "1990-01-01",
    "deceasedBoolean": False,
    "address": [
        {
            "use": "home",
            "type": "physical",
            "line": ["Kauppakatu 1 A 2", "c/o Virtanen"],
            "city": "Äänekoski",
            "district": "Keski-Suomi",
            "state": "Keski-Suomi",
            "postalCode": "44100",
            "country": "FI",
            "period": {"start": "2019-06-01"},
        }
    ],
    "maritalStatus": {"text": "naimaton"},
    "communication": [
        {
            "language": {
                "coding": [{"system": "urn:ietf:bcp:47", "code": "fi", "display": "suomi"}]
            },
            "preferred": True,
        },
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "sv"}]}},
    ],
    "generalPractitioner": [
        {"reference": "Practitioner/prac-makinen"},
        {"reference": f"{BASE}/PractitionerRole/role-tk-1/_history/3"},
    ],
    "managingOrganization": {"reference": "Organization/varha", "display": "Varha"},
    "link": [{"other": {"reference": "Patient/pat-virtanen-old"}, "type": "replaces"}],
}

PATIENT_KORHONEN: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-korhonen",
    "identifier": [{"system": HETU_SYSTEM, "value": HETU_KORHONEN}],
    "name": [{"family": "Korhonen", "given": ["Väinö"], "suffix": ["Jr."]}],
    "gender": "male",
    "birthDate": "1955-02-28",
    "deceasedDateTime": "2024-11-05T14:30:00+02:00",
    "multipleBirthInteger": 2,
    "address": [{"text": "Sairaalakatu 3, 20100 Turku", "use": "temp"}],
    "contact": [
        {
            "relationship": [{"text": "tytär"}],
            "name": {"family": "Korhonen", "given": ["Sanna"]},
            "telecom": [{"system": "phone", "value": "+358501112222"}],
        }
    ],
    "generalPractitioner": [{"identifier": {"system": "urn:oid:1.2.246.537.26", "value": "9"}}],
}

PATIENT_NIEMINEN: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-nieminen",
    "identifier": [{"system": HETU_SYSTEM, "value": HETU_NIEMINEN}],
    "name": [{"family": "Nieminen", "given": ["Eetu"]}],
    "birthDate": "2004-03",
    "deceasedBoolean": True,
    "telecom": [{"system": "email", "value": "eetu@example.fi"}],
    "managingOrganization": {"reference": "urn:uuid:7d5c3f1e-8f0b-4d57-9e53-2b1f0f0e9a11"},
}

PATIENT_MINIMAL: dict[str, Any] = {"resourceType": "Patient", "id": "pat-min"}

ORGANIZATION: dict[str, Any] = {
    "resourceType": "Organization",
    "id": "varha",
    "identifier": [
        {"system": "urn:oid:1.2.246.517.1.1", "value": "3249416-4"},
        {"system": "urn:oid:1.2.246.537.6.12.2002", "value": "1.2.246.10.32494164"},
    ],
    "active": True,
    "type": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                    "code": "govt",
                }
            ]
        }
    ],
    "name": "Varsinais-Suomen hyvinvointialue",
    "alias": ["Varha", "Egentliga Finlands välfärdsområde"],
    "telecom": [{"system": "phone", "value": "+358 2 313 0000"}],
    "address": [
        {
            "use": "work",
            "line": ["Kunnallissairaalantie 20"],
            "city": "Turku",
            "state": "Varsinais-Suomi",
            "postalCode": "20700",
            "country": "FI",
        }
    ],
    "partOf": {"reference": "Organization/fi-government"},
    "endpoint": [{"reference": "Endpoint/varha-fhir"}],
}

PRACTITIONER: dict[str, Any] = {
    "resourceType": "Practitioner",
    "id": "prac-makinen",
    "identifier": [
        {"system": HETU_SYSTEM, "value": HETU_MAKINEN},
        {"system": "urn:oid:1.2.246.537.26", "value": "10101010123"},
    ],
    "active": True,
    "name": [{"family": "Mäkinen", "given": ["Pekka", "Juhani"], "prefix": ["LL"]}],
    "telecom": [
        {"system": "email", "value": "pekka.makinen@kela.fi"},
        {"system": "phone", "value": "+358 20 634 1000", "use": "work"},
    ],
    "address": [
        {
            "city": "Helsinki",
            "state": "Uusimaa",
            "postalCode": "00250",
            "country": "FI",
            "use": "work",
        }
    ],
    "gender": "male",
    "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "fi"}], "text": "Suomi"}],
}

PRACTITIONER_ROLE: dict[str, Any] = {
    "resourceType": "PractitionerRole",
    "id": "role-sos-1",
    "identifier": [{"system": "https://pirha.example.fi/roles", "value": "SOS-0042"}],
    "active": True,
    "period": {"start": "2023-08-01"},
    "practitioner": {"reference": "Practitioner/prac-heikkinen"},
    "organization": {"reference": "Organization/pirha"},
    "code": [{"coding": [{"system": "urn:oid:1.2.246.537.6.128", "code": "2630"}]}],
    "specialty": [{"coding": [{"system": SCT, "code": "394587001"}], "text": "Sosiaalityö"}],
    "location": [{"reference": "Location/tampere-sosiaalitoimisto"}],
    "healthcareService": [{"reference": "HealthcareService/aikuissosiaalityo"}],
    "telecom": [
        {"system": "email", "value": "sosiaalityo@pirha.fi"},
        {"system": "phone", "value": "+358 3 565 7000"},
    ],
    "endpoint": [{"reference": "Endpoint/pirha-fhir"}],
}

SERVICE_REQUEST: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "id": "sr-huoli-1",
    "meta": {"profile": ["https://silta.example.fi/fhir/StructureDefinition/huoli|1.0.0"]},
    "identifier": [
        {"system": "https://kela.example.fi/notification-id", "value": "KELA-SHL35-2025-000418"}
    ],
    "instantiatesCanonical": [f"{BASE}/PlanDefinition/shl35|2.1"],
    "instantiatesUri": ["https://finlex.fi/fi/laki/ajantasa/2014/20141301#L6P35"],
    "basedOn": [{"reference": "CarePlan/cp-1"}],
    "replaces": [{"reference": "ServiceRequest/sr-huoli-0/_history/2"}],
    "requisition": {"system": "https://kela.example.fi/requisition", "value": "REQ-1"},
    "status": "active",
    "intent": "order",
    "category": [
        {"coding": [{"system": SCT, "code": "410606002", "display": "Social service procedure"}]}
    ],
    "priority": "urgent",
    "code": {
        "coding": [
            {
                "system": "https://silta.example.fi/fhir/CodeSystem/kela-notice-type",
                "code": "social-work-need",
                "display": "Ilmoitus sosiaalihuollon tarpeesta",
            }
        ],
        "text": "Huoli-ilmoitus",
    },
    "orderDetail": [{"text": "Kiireellinen yhteydenotto"}, {"coding": [{"code": "x"}]}],
    "quantityQuantity": {"value": 2.5, "unit": "h", "system": "http://unitsofmeasure.org"},
    "subject": {"reference": "Patient/pat-virtanen", "display": "Aino Virtanen"},
    "encounter": {"reference": "Encounter/enc-1"},
    "occurrencePeriod": {"start": "2025-01-14T10:32:00+02:00"},
    "authoredOn": "2025-01-14T10:32:00+02:00",
    "requester": {"reference": "Organization/kela-toimeentulotuki"},
    "performerType": {"coding": [{"system": SCT, "code": "106328005"}]},
    "performer": [
        {"reference": "Organization/pirha"},
        {"reference": f"{BASE}/PractitionerRole/role-sos-1"},
    ],
    "reasonCode": [{"text": "Asumisen huoli"}],
    "specimen": [{"reference": "Specimen/none"}],
    "bodySite": [{"text": "ei sovellu"}],
}

SERVICE_REQUEST_GROUP: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "id": "sr-group",
    "contained": [{"resourceType": "PractitionerRole", "id": "req", "active": True}],
    "status": "draft",
    "intent": "plan",
    "subject": {"reference": "Group/perhe-7"},
    "occurrenceDateTime": "2025-03",
    "requester": {"reference": "#req"},
    "performer": [{"identifier": {"system": "urn:oid:1.2.246.10.1", "value": "x"}}],
}

SERVICE_REQUEST_TIMING: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "id": "sr-timing",
    "status": "active",
    "intent": "order",
    "subject": {"reference": "http://other.example.org/fhir/Patient/p9/_history/1"},
    "occurrenceTiming": {
        "event": ["2025-04-01T08:00:00Z", "2025-04-08T08:00:00Z"],
        "repeat": {"boundsPeriod": {"start": "2025-04-01", "end": "2025-06-30"}},
    },
}

TASK: dict[str, Any] = {
    "resourceType": "Task",
    "id": "task-huoli-1",
    "identifier": [{"system": "https://pirha.example.fi/task", "value": "T-77"}],
    "groupIdentifier": {"system": "https://pirha.example.fi/task-group", "value": "G-1"},
    "basedOn": [{"reference": "ServiceRequest/sr-huoli-1"}],
    "partOf": [{"reference": "Task/task-parent"}],
    "status": "in-progress",
    "businessStatus": {"text": "Käsittelyssä"},
    "intent": "order",
    "priority": "urgent",
    "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
    "focus": {"reference": "ServiceRequest/sr-huoli-1"},
    "for": {"reference": "Patient/pat-virtanen"},
    "encounter": {"reference": "Encounter/enc-1"},
    "executionPeriod": {"start": "2025-01-15T08:00:00+02:00", "end": "2025-01-20"},
    "authoredOn": "2025-01-14T11:00:00+02:00",
    "lastModified": "2025-01-16T12:00:00.123+02:00",
    "requester": {"reference": "Organization/kela-toimeentulotuki"},
    "performerType": [{"coding": [{"system": SCT, "code": "106328005"}]}],
    "owner": {"reference": f"{BASE}/Organization/pirha"},
}

CONSENT: dict[str, Any] = {
    "resourceType": "Consent",
    "id": "consent-1",
    "identifier": [{"system": "https://kanta.example.fi/consent", "value": "C-1"}],
    "status": "active",
    "scope": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                "code": "patient-privacy",
            }
        ]
    },
    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
    "patient": {"reference": "Patient/pat-virtanen"},
    "dateTime": "2025-01-10T09:00:00+02:00",
    "performer": [{"reference": "Patient/pat-virtanen"}],
    "organization": [{"reference": "Organization/pirha"}],
    "sourceReference": {"reference": "DocumentReference/doc-suostumus"},
    "policyRule": {"text": "Sosiaalihuollon asiakaslaki"},
    "provision": {
        "type": "permit",
        "period": {"start": "2025-01-10", "end": "2026-01-10"},
        "actor": [
            {
                "role": {"text": "vastaanottaja"},
                "reference": {"reference": "Organization/kela"},
            }
        ],
        "action": [{"coding": [{"code": "disclose"}]}],
        "securityLabel": [{"system": "http://example.org/sec", "code": "SOC"}],
        "purpose": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}
        ],
        "data": [{"meaning": "related", "reference": {"reference": "ServiceRequest/sr-huoli-1"}}],
        "provision": [{"type": "deny", "actor": [{"reference": {"reference": "Organization/x"}}]}],
    },
}

CARE_PLAN: dict[str, Any] = {
    "resourceType": "CarePlan",
    "id": "cp-1",
    "identifier": [{"system": "https://pirha.example.fi/careplan", "value": "ASP-1"}],
    "instantiatesCanonical": ["https://pirha.example.fi/fhir/PlanDefinition/asp"],
    "instantiatesUri": ["https://pirha.example.fi/protokollat/asp"],
    "basedOn": [{"reference": "CarePlan/cp-0"}],
    "replaces": [{"reference": "CarePlan/cp-old"}],
    "partOf": [{"reference": "CarePlan/cp-master"}],
    "status": "active",
    "intent": "plan",
    "category": [{"text": "Asiakassuunnitelma"}],
    "subject": {"reference": "Patient/pat-virtanen"},
    "encounter": {"reference": "Encounter/enc-1"},
    "period": {"start": "2025-01-20"},
    "careTeam": [{"reference": "CareTeam/ct-1"}],
    "addresses": [{"reference": "Condition/c-1"}],
    "goal": [{"reference": "Goal/goal-asuminen"}],
    "activity": [
        {"reference": {"reference": "ServiceRequest/sr-huoli-1"}},
        {
            "detail": {
                "code": {"coding": [{"system": SCT, "code": "410606002"}]},
                "status": "scheduled",
                "scheduledTiming": {
                    "event": ["2025-02-01T10:00:00+02:00"],
                    "repeat": {"boundsPeriod": {"start": "2025-02-01"}, "frequency": 1},
                },
                "performer": [{"reference": "PractitionerRole/role-sos-1"}],
            }
        },
        {"detail": {"status": "not-started", "scheduledPeriod": {"end": "2025-12-31"}}},
        {"detail": {"status": "not-started", "scheduledString": "keväällä"}},
    ],
}

CARE_TEAM: dict[str, Any] = {
    "resourceType": "CareTeam",
    "id": "ct-1",
    "identifier": [{"system": "https://pirha.example.fi/team", "value": "TIIMI-3"}],
    "status": "active",
    "category": [{"coding": [{"system": "http://loinc.org", "code": "LA27976-2"}]}],
    "subject": {"reference": "Patient/pat-virtanen"},
    "encounter": {"reference": "Encounter/enc-1"},
    "period": {"start": "2025-01-20", "end": "2025-12-31"},
    "participant": [
        {"role": [{"text": "sosiaalityöntekijä"}], "member": {"reference": "Practitioner/p-1"}},
        {"member": {"reference": "Patient/pat-virtanen"}},
    ],
    "managingOrganization": [{"reference": "Organization/pirha"}],
}

COMMUNICATION: dict[str, Any] = {
    "resourceType": "Communication",
    "id": "comm-1",
    "identifier": [{"system": "https://pirha.example.fi/msg", "value": "M-1"}],
    "instantiatesCanonical": ["https://pirha.example.fi/fhir/Questionnaire/palaute"],
    "instantiatesUri": ["https://pirha.example.fi/palaute"],
    "basedOn": [{"reference": "ServiceRequest/sr-huoli-1"}],
    "partOf": [{"reference": "Task/task-huoli-1"}],
    "status": "completed",
    "category": [{"text": "palaute"}],
    "medium": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
                    "code": "ELECTRONIC",
                }
            ]
        }
    ],
    "subject": {"reference": "Patient/pat-virtanen"},
    "encounter": {"reference": "Encounter/enc-1"},
    "sent": "2025-01-21T15:00:00+02:00",
    "received": "2025-01-21T15:00:05+02:00",
    "recipient": [{"reference": "Organization/kela"}],
    "sender": {"reference": "Organization/pirha"},
    "payload": [{"contentString": "Ilmoitus vastaanotettu"}],
}

DOCUMENT_REFERENCE: dict[str, Any] = {
    "resourceType": "DocumentReference",
    "id": "doc-1",
    "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.246.10.9.1"},
    "identifier": [{"system": "https://kela.example.fi/decision", "value": "P-2025-1"}],
    "status": "current",
    "type": {"coding": [{"system": "http://loinc.org", "code": "47039-3"}]},
    "category": [{"text": "päätös"}],
    "subject": {"reference": "Patient/pat-virtanen"},
    "date": "2025-01-12T10:00:00+02:00",
    "author": [{"reference": "Organization/kela"}],
    "authenticator": {"reference": "Practitioner/prac-makinen"},
    "custodian": {"reference": "Organization/kela"},
    "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/doc-0"}}],
    "description": "Päätös perustoimeentulotuesta",
    "securityLabel": [{"coding": [{"code": "R"}]}],
    "content": [
        {
            "attachment": {
                "contentType": "application/pdf",
                "language": "fi",
                "url": "https://kela.example.fi/docs/P-2025-1.pdf",
            },
            "format": {"system": "urn:oid:1.3.6.1.4.1.19376.1.2.3", "code": "urn:ihe:iti:xds:2017"},
        }
    ],
    "context": {
        "encounter": [{"reference": "Encounter/enc-1"}],
        "event": [{"text": "toimeentulotuki"}],
        "period": {"start": "2025-01"},
        "facilityType": {"text": "Kela"},
        "practiceSetting": {"text": "etuuskäsittely"},
        "related": [{"reference": "ServiceRequest/sr-huoli-1"}],
    },
}

ENDPOINT: dict[str, Any] = {
    "resourceType": "Endpoint",
    "id": "kela-fhir",
    "identifier": [{"system": "https://silta.example.fi/endpoint", "value": "KELA"}],
    "status": "active",
    "connectionType": {
        "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
        "code": "hl7-fhir-rest",
    },
    "name": "Kelan FHIR-rajapinta",
    "managingOrganization": {"reference": "Organization/kela"},
    "payloadType": [{"text": "FHIR R4"}],
    "address": "https://fhir.kela.example.fi/r4",
}

GOAL: dict[str, Any] = {
    "resourceType": "Goal",
    "id": "goal-asuminen",
    "identifier": [{"system": "https://pirha.example.fi/goal", "value": "G-1"}],
    "lifecycleStatus": "active",
    "achievementStatus": {"coding": [{"code": "in-progress"}]},
    "category": [{"text": "asuminen"}],
    "description": {"text": "Vakituinen asunto"},
    "subject": {"reference": "Patient/pat-virtanen"},
    "startDate": "2025-02",
    "target": [
        {"detailQuantity": {"value": 1, "unit": "asunto"}, "dueDate": "2025-06-30"},
        {"detailInteger": 3, "dueDuration": {"value": 90, "unit": "d"}},
    ],
}

GOAL_CODED_START: dict[str, Any] = {
    "resourceType": "Goal",
    "id": "goal-2",
    "lifecycleStatus": "proposed",
    "description": {"text": "x"},
    "subject": {"reference": "Group/g-1"},
    "startCodeableConcept": {"text": "kun asunto löytyy"},
}

MEASURE_REPORT: dict[str, Any] = {
    "resourceType": "MeasureReport",
    "id": "mr-1",
    "identifier": [{"system": "https://pirha.example.fi/mr", "value": "2025Q1"}],
    "status": "complete",
    "type": "summary",
    "measure": "https://silta.example.fi/fhir/Measure/huoli-kasittelyaika|1",
    "subject": {"reference": "Patient/pat-virtanen"},
    "date": "2025-04-01",
    "reporter": {"reference": "Organization/pirha"},
    "period": {"start": "2025-01-01", "end": "2025-03-31"},
    "group": [{"population": [{"count": 412}], "measureScore": {"value": 6.5}}],
    "evaluatedResource": [{"reference": "ServiceRequest/sr-huoli-1"}],
}

PROVENANCE: dict[str, Any] = {
    "resourceType": "Provenance",
    "id": "prov-1",
    "target": [
        {"reference": "ServiceRequest/sr-huoli-1/_history/1"},
        {"reference": "Patient/pat-virtanen"},
    ],
    "occurredDateTime": "2025-01-14T10:32:00+02:00",
    "recorded": "2025-01-14T10:32:05.5+02:00",
    "location": {"reference": "Location/kela-hki"},
    "agent": [
        {
            "type": {"coding": [{"code": "author"}]},
            "role": [{"text": "ilmoittaja"}],
            "who": {"reference": "Organization/kela"},
        }
    ],
    "entity": [{"role": "source", "what": {"reference": "DocumentReference/doc-1"}}],
    "signature": [
        {
            "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
            "when": "2025-01-14T10:32:05Z",
            "who": {"reference": "Organization/kela"},
        }
    ],
}

PROVENANCE_PERIOD: dict[str, Any] = {
    "resourceType": "Provenance",
    "id": "prov-2",
    "target": [{"reference": "Task/task-1"}],
    "occurredPeriod": {"start": "2025-01-01"},
    "recorded": "2025-01-14T10:32:05Z",
    "agent": [{"who": {"reference": "Patient/pat-virtanen"}}],
}

SUBSCRIPTION: dict[str, Any] = {
    "resourceType": "Subscription",
    "id": "sub-1",
    "status": "active",
    "contact": [{"system": "email", "value": "integraatiot@kela.fi"}],
    "reason": "Kelan tehtävät",
    "criteria": "Task?owner=Organization/kela",
    "channel": {
        "type": "rest-hook",
        "endpoint": "https://fhir.kela.example.fi/notify",
        "payload": "application/fhir+json",
    },
}

AUDIT_EVENT: dict[str, Any] = {
    "resourceType": "AuditEvent",
    "id": "ae-1",
    "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106"},
    "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
    "action": "R",
    "recorded": "2025-01-14T10:35:00.000+02:00",
    "outcome": "0",
    "agent": [
        {
            "role": [{"text": "käsittelijä"}],
            "who": {"reference": "Practitioner/prac-makinen"},
            "altId": "kela-user-42",
            "name": "Pekka Mäkinen",
            "requestor": True,
            "policy": ["https://kela.example.fi/policy/1"],
            "network": {"address": "10.0.0.5", "type": "2"},
        },
        {"who": {"reference": "Patient/pat-virtanen"}, "requestor": False},
    ],
    "source": {
        "site": "Kela",
        "observer": {"reference": "Device/silta-gw"},
        "type": [{"code": "4"}],
    },
    "entity": [
        {
            "what": {"reference": "Patient/pat-virtanen"},
            "type": {"code": "1"},
            "role": {"code": "1"},
            "name": "Aino Virtanen",
        },
        {"what": {"reference": "ServiceRequest/sr-huoli-1"}},
    ],
}

BUNDLE: dict[str, Any] = {
    "resourceType": "Bundle",
    "id": "b-1",
    "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3b4a6e-1111"},
    "type": "collection",
    "timestamp": "2025-01-14T10:32:00+02:00",
    "entry": [
        {"fullUrl": f"{BASE}/Patient/pat-virtanen", "resource": PATIENT_VIRTANEN},
        {"fullUrl": f"{BASE}/Task/task-huoli-1", "resource": TASK},
    ],
}

RESOURCES: list[dict[str, Any]] = [
    PATIENT_VIRTANEN,
    PATIENT_KORHONEN,
    PATIENT_NIEMINEN,
    PATIENT_MINIMAL,
    ORGANIZATION,
    PRACTITIONER,
    PRACTITIONER_ROLE,
    SERVICE_REQUEST,
    SERVICE_REQUEST_GROUP,
    SERVICE_REQUEST_TIMING,
    TASK,
    CONSENT,
    CARE_PLAN,
    CARE_TEAM,
    COMMUNICATION,
    DOCUMENT_REFERENCE,
    ENDPOINT,
    GOAL,
    GOAL_CODED_START,
    MEASURE_REPORT,
    PROVENANCE,
    PROVENANCE_PERIOD,
    SUBSCRIPTION,
    AUDIT_EVENT,
    BUNDLE,
]

_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _fixture_resources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(_FIXTURES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("resourceType") in STORED_TYPES:
            found.append(data)
    return found


# --------------------------------------------------------------------------- helpers


def _plain(value: Any) -> Any:
    """fhirpathpy hands decimals back as Decimal; the compiled code keeps JSON floats."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _assert_same(expression: str, resource: dict[str, Any]) -> list[Any]:
    compiled = compile_path(expression)(resource)
    reference = fhirpathpy_evaluator(expression)(resource)
    assert _plain(compiled) == _plain(reference), expression
    return compiled


def _all_expressions() -> list[tuple[str, str, str]]:
    return [
        (resource_type, code, param.expression)
        for resource_type in STORED_TYPES
        for code, param in params_for(resource_type).items()
    ]


# --------------------------------------------------------------------------- tests


def test_test_hetus_are_valid() -> None:
    for hetu in (HETU_VIRTANEN, HETU_KORHONEN, HETU_NIEMINEN, HETU_MAKINEN):
        digits = hetu[:6] + hetu[7:10]
        assert 900 <= int(hetu[7:10]) <= 999
        assert HETU_CHECK[int(digits) % 31] == hetu[10]


def test_every_stored_type_has_a_sample() -> None:
    assert {r["resourceType"] for r in RESOURCES} == set(STORED_TYPES)


def test_only_the_deceased_expression_falls_back() -> None:
    fallback = {(t, c) for t, c, e in _all_expressions() if not is_compiled(e)}
    assert fallback == {("Patient", "deceased")}


@pytest.mark.parametrize(
    "resource", RESOURCES, ids=[f"{r['resourceType']}/{r['id']}" for r in RESOURCES]
)
def test_compiled_matches_fhirpathpy_on_samples(resource: dict[str, Any]) -> None:
    for code, param in params_for(resource["resourceType"]).items():
        _assert_same(param.expression, resource)
        assert code


def test_compiled_matches_fhirpathpy_on_project_fixtures() -> None:
    resources = _fixture_resources()
    for resource in resources:
        for param in params_for(resource["resourceType"]).values():
            _assert_same(param.expression, resource)


def test_samples_exercise_most_expressions() -> None:
    hit: set[tuple[str, str]] = set()
    for resource in RESOURCES:
        for code, param in params_for(resource["resourceType"]).items():
            if compile_path(param.expression)(resource):
                hit.add((resource["resourceType"], code))
    every = {(t, c) for t, c, _ in _all_expressions()}
    # Resource-level meta parameters are exercised on Patient only.
    missed = {(t, c) for t, c in every - hit if not (c.startswith("_") and t != "Patient")}
    assert not missed, sorted(missed)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Patient.name.given", ["Aino", "Maria"]),
        ("Patient.deceased", [False]),
        ("(Patient.deceased.ofType(dateTime))", []),
        ("Patient.deceased.ofType(boolean)", [False]),
        ("Patient.deceased as boolean", [False]),
        ("Patient.telecom.where(system='email').value", ["aino.virtanen@example.fi"]),
        (
            "Patient.generalPractitioner.where(resolve() is PractitionerRole)",
            [{"reference": f"{BASE}/PractitionerRole/role-tk-1/_history/3"}],
        ),
        ("Patient.name[1].text", ["Ainski"]),
        ("Patient.gender | Patient.gender | Patient.birthDate", ["female", "1990-01-01"]),
        ("Patient.communication.language.coding.code", ["fi", "sv"]),
        ("ServiceRequest.name", []),
    ],
)
def test_selected_expressions(expression: str, expected: list[Any]) -> None:
    assert is_compiled(expression)
    assert _assert_same(expression, PATIENT_VIRTANEN) == expected


@pytest.mark.parametrize(
    ("expression", "resource", "expected"),
    [
        ("ServiceRequest.occurrence", SERVICE_REQUEST_GROUP, ["2025-03"]),
        ("ServiceRequest.occurrence.ofType(Period)", SERVICE_REQUEST_GROUP, []),
        (
            "ServiceRequest.occurrence.ofType(Timing).repeat.bounds.ofType(Period).end",
            SERVICE_REQUEST_TIMING,
            ["2025-06-30"],
        ),
        ("ServiceRequest.subject.where(resolve() is Patient)", SERVICE_REQUEST_GROUP, []),
        (
            "ServiceRequest.subject.where(resolve() is Patient)",
            SERVICE_REQUEST_TIMING,
            [{"reference": "http://other.example.org/fhir/Patient/p9/_history/1"}],
        ),
        (
            "ServiceRequest.requester.where(resolve() is PractitionerRole)",
            SERVICE_REQUEST_GROUP,
            [],
        ),
        ("(Goal.target.due.ofType(date))", GOAL, ["2025-06-30"]),
        ("Goal.target.detail.ofType(integer)", GOAL, [3]),
        ("Goal.start.ofType(CodeableConcept).text", GOAL_CODED_START, ["kun asunto löytyy"]),
        ("Bundle.entry[1].resource.id", BUNDLE, None),
        ("Bundle.entry[0].resource", BUNDLE, [PATIENT_VIRTANEN]),
        ("Bundle.entry.resource.ofType(Task)", BUNDLE, [TASK]),
        ("Bundle.entry.resource.ofType(Patient).name.family", BUNDLE, ["Virtanen"]),
        ("Bundle.entry.resource.ofType(DomainResource).id", BUNDLE, None),
        ("Consent.provision.provision.actor.reference", CONSENT, [{"reference": "Organization/x"}]),
    ],
)
def test_choice_type_and_index_expressions(
    expression: str, resource: dict[str, Any], expected: list[Any] | None
) -> None:
    result = _assert_same(expression, resource)
    if expected is not None:
        assert is_compiled(expression)
        assert result == expected


@pytest.mark.parametrize(
    "expression",
    [
        "Patient.deceased.exists() and Patient.deceased != false",
        "Patient.name.given.first()",
        "Patient.telecom.where(rank > 0)",
        "Patient.name.where(given = 'Aino')",
        "Patient.identifier.where(system = 'urn:oid:1.2.246.21').value",
    ],
)
def test_more_expressions_agree(expression: str) -> None:
    for resource in (PATIENT_VIRTANEN, PATIENT_KORHONEN, PATIENT_MINIMAL):
        _assert_same(expression, resource)


def test_unsupported_forms_fall_back() -> None:
    assert not is_compiled("Patient.deceased.exists() and Patient.deceased != false")
    assert not is_compiled("Patient.name.given.first()")
    assert not is_compiled("Bundle.entry.resource.id")  # navigation below a Resource
    assert not is_compiled("Patient.deceased.value")  # navigation below an untyped choice
    assert not is_compiled("name.given")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/123", ("Patient", "123", None, None)),
        ("Patient/123/_history/4", ("Patient", "123", "4", None)),
        (f"{BASE}/Patient/a-1", ("Patient", "a-1", None, BASE)),
        (f"{BASE}/Patient/a-1/_history/2", ("Patient", "a-1", "2", BASE)),
        ("#contained", None),
        ("urn:uuid:7d5c3f1e-8f0b-4d57-9e53-2b1f0f0e9a11", None),
        ("Unknown/1", None),
        ("patient/1", None),
        ("http://example.org/some/thing", None),
    ],
)
def test_parse_reference(reference: str, expected: tuple[Any, ...] | None) -> None:
    parsed = parse_reference(reference)
    assert (tuple(parsed) if parsed else None) == expected


# --------------------------------------------------------------------------- hypothesis

_REFERENCES = st.sampled_from(
    [
        "Patient/p1",
        "Patient/p2/_history/3",
        f"{BASE}/Patient/p3",
        f"{BASE}/Organization/o1/_history/1",
        "Organization/o2",
        "Practitioner/pr1",
        "PractitionerRole/r1",
        "Group/g1",
        "#c1",
        "urn:uuid:0c3b4a6e-2222",
        "patient/lower",
        "Unknown/1",
    ]
)
_TEXT = st.sampled_from(["Äänekoski", "Virtanen", "Aino", "  Maria  ", "", "x y", "Öljy"])
_DATES = st.sampled_from(["2025", "2025-01", "2025-01-14", "2025-01-14T10:32:00+02:00"])


def _maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_REFERENCE = st.one_of(
    _maybe(reference=_REFERENCES, display=_TEXT),
    st.builds(lambda v: {"identifier": {"value": v}}, _TEXT),
)
_CODING = _maybe(
    system=st.sampled_from(["http://snomed.info/sct", "urn:oid:1.2.246.537.6.12"]),
    code=st.sampled_from(["1", "2", "fi"]),
    display=_TEXT,
)
_CODEABLE = _maybe(coding=st.lists(_CODING, max_size=2), text=_TEXT)
_EXTENSION = st.just({"extension": [{"url": "https://example.fi/x", "valueString": "y"}]})
_PATIENT = st.fixed_dictionaries(
    {"resourceType": st.just("Patient")},
    optional={
        "id": st.just("p1"),
        "identifier": st.lists(
            _maybe(
                system=st.just(HETU_SYSTEM),
                value=st.sampled_from([HETU_VIRTANEN, HETU_KORHONEN]),
                type=_CODEABLE,
            ),
            max_size=3,
        ),
        "active": st.booleans(),
        "name": st.lists(
            st.one_of(
                _maybe(
                    family=_TEXT,
                    given=st.lists(_TEXT, max_size=3),
                    text=_TEXT,
                    prefix=st.lists(_TEXT, max_size=1),
                    use=st.sampled_from(["official", "nickname"]),
                ),
                _EXTENSION,
            ),
            max_size=3,
        ),
        "telecom": st.lists(
            _maybe(
                system=st.sampled_from(["phone", "email", "fax"]),
                value=_TEXT,
                use=st.sampled_from(["home", "mobile"]),
            ),
            max_size=3,
        ),
        "gender": st.sampled_from(["female", "male", "unknown"]),
        "birthDate": _DATES,
        "deceasedBoolean": st.booleans(),
        "deceasedDateTime": _DATES,
        "address": st.lists(
            _maybe(city=_TEXT, line=st.lists(_TEXT, max_size=2), postalCode=_TEXT, use=_TEXT),
            max_size=2,
        ),
        "generalPractitioner": st.lists(_REFERENCE, max_size=3),
        "managingOrganization": _REFERENCE,
        "link": st.lists(_maybe(other=_REFERENCE, type=st.just("seealso")), max_size=2),
        "communication": st.lists(_maybe(language=_CODEABLE), max_size=2),
        "multipleBirthInteger": st.integers(min_value=1, max_value=3),
    },
)
_SERVICE_REQUEST = st.fixed_dictionaries(
    {"resourceType": st.just("ServiceRequest")},
    optional={
        "identifier": st.lists(_maybe(system=_TEXT, value=_TEXT), max_size=2),
        "status": st.sampled_from(["active", "draft"]),
        "code": _CODEABLE,
        "category": st.lists(_CODEABLE, max_size=2),
        "orderDetail": st.lists(_CODEABLE, max_size=2),
        "subject": _REFERENCE,
        "requester": _REFERENCE,
        "performer": st.lists(_REFERENCE, max_size=3),
        "reasonCode": st.lists(_CODEABLE, max_size=2),
        "occurrenceDateTime": _DATES,
        "occurrencePeriod": _maybe(start=_DATES, end=_DATES),
        "occurrenceTiming": _maybe(
            event=st.lists(_DATES, max_size=2),
            repeat=_maybe(boundsPeriod=_maybe(start=_DATES)),
        ),
        "instantiatesCanonical": st.lists(
            st.sampled_from([f"{BASE}/PlanDefinition/a|1", f"{BASE}/PlanDefinition/b"]),
            max_size=3,
        ),
        "quantityQuantity": _maybe(
            value=st.floats(min_value=0, max_value=100, allow_nan=False), unit=_TEXT
        ),
        "authoredOn": _DATES,
    },
)

_EXTRA_EXPRESSIONS = {
    "Patient": [
        "Patient.name.given | Patient.name.family",
        "Patient.identifier | Patient.identifier",
        "Patient.generalPractitioner.where(resolve() is Organization) | "
        "Patient.managingOrganization",
        "(Patient.deceased as dateTime)",
        "Patient.deceased.as(boolean)",
        "Patient.telecom.where(use='mobile')",
        "Patient.name[0].given",
        "Patient.telecom[1]",
        "Patient.link.other.where(resolve() is Patient)",
        "Patient.multipleBirth.ofType(integer)",
        "Patient.name.ofType(HumanName).family",
        "Patient.identifier.type.coding.where(code='1')",
        "Patient.name.where(given='Aino').family",
        "Patient.name.where(given = 'Virtanen')",
    ],
    "ServiceRequest": [
        "ServiceRequest.occurrence.ofType(Period)",
        "ServiceRequest.occurrence.ofType(Timing).event",
        "ServiceRequest.occurrence.ofType(Timing).repeat.bounds.ofType(Period).start",
        "ServiceRequest.subject.where(resolve() is Group)",
        "ServiceRequest.orderDetail.text | ServiceRequest.code.text",
        "ServiceRequest.code.coding.where(system='http://snomed.info/sct').code",
        "ServiceRequest.performer.where(resolve() is Practitioner) | "
        "ServiceRequest.requester.where(resolve() is Practitioner)",
        "ServiceRequest.quantity",
        "ServiceRequest.instantiatesCanonical | ServiceRequest.instantiatesCanonical",
    ],
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource=st.one_of(_PATIENT, _SERVICE_REQUEST))
def test_compiled_matches_fhirpathpy_on_generated_resources(resource: dict[str, Any]) -> None:
    resource_type = resource["resourceType"]
    expressions = [p.expression for p in params_for(resource_type).values()]
    for expression in [*expressions, *_EXTRA_EXPRESSIONS[resource_type]]:
        _assert_same(expression, resource)


def test_extra_expressions_are_compiled() -> None:
    for expressions in _EXTRA_EXPRESSIONS.values():
        for expression in expressions:
            assert is_compiled(expression), expression


@pytest.mark.parametrize(
    "patient",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Patient", "deceasedBoolean": False},
        {"resourceType": "Patient", "deceasedBoolean": True},
        {"resourceType": "Patient", "deceasedDateTime": "2020-02-03"},
    ],
)
def test_exists_and_not_false_form_matches_fhirpathpy(patient: dict[str, Any]) -> None:
    expression = "Patient.deceased.exists() and Patient.deceased != false"
    assert compile_path(expression)(patient) == fhirpathpy_evaluator(expression)(patient)


@pytest.mark.parametrize(
    ("expression", "member"),
    [
        ("Patient.name", "name"),
        ("Patient.name.family", "name"),
        ("Task.for.where(resolve() is Patient)", "for"),
        ("ServiceRequest.code.coding.where(system='http://snomed.info/sct').code", "code"),
        ("Patient.deceased.exists() and Patient.deceased != false", None),
        ("ServiceRequest.orderDetail.text | ServiceRequest.code.text", None),
        ("Observation.value.ofType(Quantity)", None),
    ],
)
def test_leading_member(expression: str, member: str | None) -> None:
    assert leading_member(expression) == member


def test_every_expression_is_empty_without_its_leading_member() -> None:
    """What lets index extraction skip a parameter whose element the resource lacks:
    checked by fhirpathpy on every sample and fixture with that element removed."""
    checked = 0
    for resource in [*RESOURCES, *_fixture_resources()]:
        for param in params_for(resource["resourceType"]).values():
            member = leading_member(param.expression)
            if member is None or member not in resource:
                continue
            without = {k: v for k, v in resource.items() if k != member}
            assert fhirpathpy_evaluator(param.expression)(without) == [], param.expression
            checked += 1
    assert checked > 200


def test_each_expression_is_compiled_once() -> None:
    """Writes and policy decisions evaluate the same few expressions over and over."""
    for _, _, expression in _all_expressions():
        assert compile_path(expression) is compile_path(expression)
        assert leading_member(expression) == leading_member(expression)
