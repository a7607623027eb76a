"""Wire formats: content negotiation, JSON and XML bodies, XML rendering and round trips
(R4 http.html §3.1.0.1.10, json.html, xml.html)."""

from __future__ import annotations

import copy
import time
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

from gateway.errors import BadRequest, Issue, NotAcceptable, UnsupportedMediaType, operation_outcome
from gateway.fhir.formats import (
    FHIR_NS,
    XHTML_NS,
    WireFormat,
    load_type_infos,
    negotiate_response_format,
    parse_body,
    render,
    type_info,
)

JSON_TYPE = "application/fhir+json"
XML_TYPE = "application/fhir+xml"

# ---------------------------------------------------------------------------
# Finnish example content
# ---------------------------------------------------------------------------

HETU_CHECK_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
HETU_OID = "urn:oid:1.2.246.21"
BUSINESS_ID_OID = "urn:oid:1.2.246.10"
MUNICIPALITY_EXT = "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/municipality-code"
MUNICIPALITY_SYSTEM = "urn:oid:1.2.246.537.6.21"
SILTA_CS = "https://silta.example.org/fhir/CodeSystem"


def hetu(ddmmyy: str, century_sign: str, individual: int) -> str:
    """A test henkilötunnus: individual numbers 900-999 are reserved for test use."""
    assert 900 <= individual <= 999
    number = f"{individual:03d}"
    return f"{ddmmyy}{century_sign}{number}{HETU_CHECK_CHARS[int(ddmmyy + number) % 31]}"


def business_id(digits: str) -> str:
    """A Y-tunnus with its check digit (weights 7, 9, 10, 5, 8, 4, 2, modulo 11)."""
    remainder = sum(int(d) * w for d, w in zip(digits, (7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    assert remainder != 1
    return f"{digits}-{0 if remainder == 0 else 11 - remainder}"


def municipality(code: str, name: str) -> dict[str, Any]:
    return {
        "url": MUNICIPALITY_EXT,
        "valueCoding": {"system": MUNICIPALITY_SYSTEM, "code": code, "display": name},
    }


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    result = {"system": system, "code": code}
    if display is not None:
        result["display"] = display
    return result


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)]}


MAKELA_HETU = hetu("240679", "-", 931)
LAHTINEN_HETU = hetu("030512", "A", 968)


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "pat-makela",
        "meta": {
            "versionId": "3",
            "lastUpdated": "2025-02-03T08:15:30.000Z",
            "profile": [
                "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/fi-base-patient"
            ],
        },
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Eero Juhani Mäkelä, '
            "s. 24.6.1979 &amp; <b>Turku</b></p></div>",
        },
        "identifier": [{"use": "official", "system": HETU_OID, "value": MAKELA_HETU}],
        "active": True,
        "name": [
            {
                "use": "official",
                "text": "Eero Juhani Mäkelä",
                "family": "Mäkelä",
                "given": ["Eero", "Juhani"],
                "_given": [
                    None,
                    {
                        "id": "kutsumanimi",
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier",
                                "valueCode": "CL",
                            }
                        ],
                    },
                ],
            }
        ],
        "telecom": [
            {"system": "phone", "value": "+358 40 765 4321", "use": "mobile", "rank": 1},
            {"system": "email", "value": "eero.makela@example.fi"},
        ],
        "gender": "male",
        "birthDate": "1979-06-24",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1979-06-24T04:35:00+03:00",
                }
            ]
        },
        "deceasedBoolean": False,
        "address": [
            {
                "extension": [municipality("853", "Turku")],
                "use": "home",
                "line": ["Aurakatu 8 A 5"],
                "city": "Turku",
                "postalCode": "20100",
                "country": "FI",
            }
        ],
        "maritalStatus": concept(
            "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"
        ),
        "multipleBirthInteger": 2,
        "contact": [
            {
                "relationship": [concept("http://terminology.hl7.org/CodeSystem/v2-0131", "N")],
                "name": {"family": "Mäkelä", "given": ["Liisa"]},
                "telecom": [{"system": "phone", "value": "+358 50 111 2233"}],
            }
        ],
        "communication": [
            {"language": concept("urn:ietf:bcp:47", "fi", "suomi"), "preferred": True},
            {"language": concept("urn:ietf:bcp:47", "sv", "svenska")},
        ],
        "generalPractitioner": [
            {"reference": "Organization/varha", "display": "Varsinais-Suomen hyvinvointialue"}
        ],
        "managingOrganization": {"reference": "Organization/varha"},
    }


def organization() -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": "varha",
        "identifier": [
            {"use": "official", "system": BUSINESS_ID_OID, "value": business_id("3221311")},
            {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.246.10.32213112.10"},
        ],
        "active": True,
        "type": [concept(f"{SILTA_CS}/organization-type", "hyvinvointialue", "Hyvinvointialue")],
        "name": "Varsinais-Suomen hyvinvointialue",
        "alias": ["Varha", "Egentliga Finlands välfärdsområde"],
        "telecom": [{"system": "url", "value": "https://www.varha.example.fi"}],
        "address": [
            {
                "extension": [municipality("853", "Turku")],
                "line": ["Kunnallissairaalantie 20"],
                "city": "Turku",
                "postalCode": "20700",
                "country": "FI",
            }
        ],
        "contact": [
            {
                "purpose": concept(
                    "http://terminology.hl7.org/CodeSystem/contactentity-type", "ADMIN"
                ),
                "name": {"text": "Kirjaamo"},
                "telecom": [{"system": "email", "value": "kirjaamo@varha.example.fi"}],
            }
        ],
        "endpoint": [{"reference": "Endpoint/varha-fhir"}],
    }


def practitioner() -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": "sosiaalityo-nieminen",
        "identifier": [{"system": "urn:oid:1.2.246.537.26", "value": "10094312"}],
        "active": True,
        "name": [{"family": "Nieminen", "given": ["Sanna", "Maria"], "prefix": ["YTM"]}],
        "telecom": [{"system": "phone", "value": "+358 2 313 0000", "use": "work"}],
        "gender": "female",
        "birthDate": "1985",
        "qualification": [
            {
                "identifier": [{"system": "urn:oid:1.2.246.537.26", "value": "10094312"}],
                "code": {
                    "coding": [coding(f"{SILTA_CS}/ammattioikeus", "STT", "Sosiaalityöntekijä")],
                    "text": "Laillistettu sosiaalityöntekijä",
                },
                "period": {"start": "2011-08-01"},
                "issuer": {"display": "Valvira"},
            }
        ],
        "communication": [concept("urn:ietf:bcp:47", "fi"), concept("urn:ietf:bcp:47", "sv")],
    }


def practitioner_role() -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": "varha-sosiaalityontekija-nieminen",
        "active": True,
        "period": {"start": "2023-01-01"},
        "practitioner": {"reference": "Practitioner/sosiaalityo-nieminen"},
        "organization": {"reference": "Organization/varha"},
        "code": [concept(f"{SILTA_CS}/rooli", "sosiaalityontekija", "Sosiaalityöntekijä")],
        "specialty": [concept(f"{SILTA_CS}/palvelu", "aikuissosiaalityo", "Aikuissosiaalityö")],
        "telecom": [{"system": "email", "value": "sanna.nieminen@varha.example.fi"}],
        "availableTime": [
            {
                "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                "availableStartTime": "08:00:00",
                "availableEndTime": "15:45:00",
            }
        ],
        "notAvailable": [
            {"description": "Kesäloma", "during": {"start": "2025-07-01", "end": "2025-07-27"}}
        ],
        "availabilityExceptions": "Ei tavoitettavissa arkipyhinä",
        "endpoint": [{"reference": "Endpoint/varha-fhir"}],
    }


def endpoint() -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "id": "varha-fhir",
        "status": "active",
        "connectionType": coding(
            "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "hl7-fhir-rest"
        ),
        "name": "Varhan FHIR-rajapinta",
        "managingOrganization": {"reference": "Organization/varha"},
        "contact": [{"system": "email", "value": "integraatiot@varha.example.fi"}],
        "period": {"start": "2024-01-01T00:00:00+02:00"},
        "payloadType": [
            concept("http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "any")
        ],
        "payloadMimeType": ["application/fhir+json", "application/fhir+xml"],
        "address": "https://fhir.varha.example.fi/r4",
        "header": ["X-Silta-Tenant: varha"],
    }


def care_team() -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "id": "tiimi-makela",
        "status": "active",
        "category": [concept("http://loinc.org", "LA28865-6", "Longitudinal care-coordination")],
        "name": "Eero Mäkelän asiakkuustiimi",
        "subject": {"reference": "Patient/pat-makela"},
        "period": {"start": "2025-02-10"},
        "participant": [
            {
                "role": [concept(f"{SILTA_CS}/rooli", "omatyontekija", "Omatyöntekijä")],
                "member": {"reference": "Practitioner/sosiaalityo-nieminen"},
                "onBehalfOf": {"reference": "Organization/varha"},
                "period": {"start": "2025-02-10"},
            },
            {
                "role": [concept(f"{SILTA_CS}/rooli", "asiakkuusvastaava")],
                "member": {"reference": "Organization/kela", "display": "Kela"},
            },
        ],
        "managingOrganization": [{"reference": "Organization/varha"}],
        "note": [{"text": "Tiimi perustettu huoli-ilmoituksen perusteella.", "time": "2025-02-10"}],
    }


def service_request() -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "huoli-makela",
        "identifier": [{"system": f"{SILTA_CS}/huoli-ilmoitus", "value": "HI-2025-000123"}],
        "status": "active",
        "intent": "order",
        "category": [concept(f"{SILTA_CS}/palveluluokka", "sosiaalihuolto", "Sosiaalihuolto")],
        "priority": "urgent",
        "code": {
            "coding": [coding(f"{SILTA_CS}/palvelu", "huoli-ilmoitus", "Huoli-ilmoitus")],
            "text": "Yhteydenotto sosiaalihuollon tarpeen arvioimiseksi",
        },
        "quantityQuantity": {
            "value": 2.5,
            "unit": "h",
            "system": "http://unitsofmeasure.org",
            "code": "h",
        },
        "subject": {"reference": "Patient/pat-makela"},
        "occurrenceDateTime": "2025-02-17",
        "authoredOn": "2025-02-10T09:30:00+02:00",
        "requester": {"reference": "PractitionerRole/kela-asiakkuusvastaava"},
        "performer": [{"reference": "Organization/varha"}],
        "reasonCode": [{"text": "Toimeentulotuen hakija vaarassa menettää asuntonsa"}],
        "supportingInfo": [{"reference": "DocumentReference/kela-paatos-makela"}],
        "note": [
            {
                "authorReference": {"reference": "PractitionerRole/kela-asiakkuusvastaava"},
                "time": "2025-02-10T09:31:00+02:00",
                "text": "Asiakas antoi suostumuksensa yhteydenottoon.\nSoittoaika aamupäivisin.",
            }
        ],
    }


def consent() -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": "suostumus-makela",
        "status": "active",
        "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"),
        "category": [concept("http://loinc.org", "59284-0", "Patient Consent")],
        "patient": {"reference": "Patient/pat-makela"},
        "dateTime": "2025-02-10T09:25:00+02:00",
        "performer": [{"reference": "Patient/pat-makela"}],
        "organization": [{"reference": "Organization/kela"}],
        "policyRule": concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
        "provision": {
            "type": "permit",
            "period": {"start": "2025-02-10", "end": "2025-08-10"},
            "actor": [
                {
                    "role": concept(
                        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"
                    ),
                    "reference": {"reference": "Organization/varha"},
                }
            ],
            "action": [concept("http://terminology.hl7.org/CodeSystem/consentaction", "disclose")],
            "data": [
                {"meaning": "related", "reference": {"reference": "ServiceRequest/huoli-makela"}}
            ],
        },
    }


def care_plan() -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": "asiakassuunnitelma-makela",
        "status": "active",
        "intent": "plan",
        "category": [concept(f"{SILTA_CS}/suunnitelma", "asiakassuunnitelma")],
        "title": "Asiakassuunnitelma",
        "description": "Asumisen turvaaminen ja toimeentulon vakauttaminen",
        "subject": {"reference": "Patient/pat-makela"},
        "period": {"start": "2025-02-20", "end": "2025-08-20"},
        "created": "2025-02-20T13:00:00+02:00",
        "author": {"reference": "Practitioner/sosiaalityo-nieminen"},
        "careTeam": [{"reference": "CareTeam/tiimi-makela"}],
        "goal": [{"reference": "Goal/asuminen-makela"}],
        "activity": [
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "code": {"text": "Asumisneuvonta"},
                    "status": "in-progress",
                    "scheduledPeriod": {"start": "2025-03-01"},
                    "performer": [{"reference": "Organization/varha"}],
                    "description": "Tapaaminen asumisneuvojan kanssa kahden viikon välein",
                }
            }
        ],
        "note": [{"text": "Seuraava arvio 20.5.2025"}],
    }


def goal() -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "id": "asuminen-makela",
        "lifecycleStatus": "active",
        "achievementStatus": concept(
            "http://terminology.hl7.org/CodeSystem/goal-achievement", "in-progress"
        ),
        "priority": concept("http://terminology.hl7.org/CodeSystem/goal-priority", "high-priority"),
        "description": {"text": "Vuokrasopimus säilyy ja vuokrarästit maksettu"},
        "subject": {"reference": "Patient/pat-makela"},
        "startDate": "2025-02-20",
        "target": [
            {
                "measure": {"text": "Vuokrarästit (EUR)"},
                "detailQuantity": {"value": 0, "unit": "EUR"},
                "dueDate": "2025-05-31",
            },
            {"measure": {"text": "Asunto säilyy"}, "detailBoolean": True, "dueDate": "2025-08-20"},
        ],
        "expressedBy": {"reference": "Patient/pat-makela"},
        "addresses": [{"reference": "ServiceRequest/huoli-makela"}],
    }


def task() -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": "tehtava-makela",
        "basedOn": [{"reference": "ServiceRequest/huoli-makela"}],
        "status": "requested",
        "intent": "order",
        "priority": "urgent",
        "code": concept("http://hl7.org/fhir/CodeSystem/task-code", "fulfill"),
        "description": "Ota yhteyttä asiakkaaseen kolmen arkipäivän kuluessa",
        "for": {"reference": "Patient/pat-makela"},
        "authoredOn": "2025-02-10T09:32:00+02:00",
        "lastModified": "2025-02-10T09:32:00+02:00",
        "requester": {"reference": "Organization/kela"},
        "owner": {"reference": "Organization/varha"},
        "restriction": {"period": {"end": "2025-02-13T16:00:00+02:00"}},
        "input": [
            {
                "type": {"text": "Päätös"},
                "valueReference": {"reference": "DocumentReference/kela-paatos-makela"},
            },
            {"type": {"text": "Määräpäivä"}, "valueDate": "2025-02-13"},
            {"type": {"text": "Tulkki tarvitaan"}, "valueBoolean": False},
            {"type": {"text": "Yhteydenottoyrityksiä"}, "valueInteger": 0},
            {"type": {"text": "Vuokrarästi (EUR)"}, "valueDecimal": 1234.5},
        ],
    }


def communication() -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "id": "palaute-makela",
        "basedOn": [{"reference": "ServiceRequest/huoli-makela"}],
        "status": "completed",
        "category": [concept(f"{SILTA_CS}/viesti", "palaute", "Palaute yhteydenotosta")],
        "priority": "routine",
        "subject": {"reference": "Patient/pat-makela"},
        "sent": "2025-02-12T14:05:00+02:00",
        "received": "2025-02-12T14:05:03+02:00",
        "recipient": [{"reference": "Organization/kela"}],
        "sender": {"reference": "Practitioner/sosiaalityo-nieminen"},
        "payload": [
            {"contentString": "Asiakkaaseen on oltu yhteydessä; asiakkuus alkanut 12.2.2025."},
            {"contentReference": {"reference": "CarePlan/asiakassuunnitelma-makela"}},
        ],
    }


def document_reference() -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": "kela-paatos-makela",
        "masterIdentifier": {"system": f"{SILTA_CS}/kela-paatos", "value": "TTT-2025-44871"},
        "status": "current",
        "docStatus": "final",
        "type": concept(f"{SILTA_CS}/asiakirjatyyppi", "toimeentulotukipaatos"),
        "category": [concept(f"{SILTA_CS}/asiakirjaluokka", "etuuspaatos")],
        "subject": {"reference": "Patient/pat-makela"},
        "date": "2025-02-07T12:00:00.000+02:00",
        "author": [{"reference": "Organization/kela"}],
        "custodian": {"reference": "Organization/kela"},
        "description": "Perustoimeentulotukipäätös, hylätty osittain",
        "securityLabel": [concept("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "language": "fi",
                    "url": "https://asiointi.kela.example.fi/paatokset/TTT-2025-44871.pdf",
                    "size": 48213,
                    "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
                    "title": "Päätös 7.2.2025",
                    "creation": "2025-02-07T11:58:00+02:00",
                },
                "format": coding(
                    "urn:oid:1.3.6.1.4.1.19376.1.2.3", "urn:ihe:iti:xds:2017:mimeTypeSufficient"
                ),
            }
        ],
        "context": {"period": {"start": "2025-02-01", "end": "2025-02-28"}},
    }


def provenance() -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": "huoli-makela-provenance",
        "target": [{"reference": "ServiceRequest/huoli-makela/_history/1"}],
        "occurredDateTime": "2025-02-10T09:30:00+02:00",
        "recorded": "2025-02-10T09:31:02.123+02:00",
        "policy": ["https://silta.example.org/fhir/policy/huoli-ilmoitus"],
        "activity": concept("http://terminology.hl7.org/CodeSystem/v3-DataOperation", "CREATE"),
        "agent": [
            {
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author"
                ),
                "who": {"reference": "PractitionerRole/kela-asiakkuusvastaava"},
                "onBehalfOf": {"reference": "Organization/kela"},
            }
        ],
        "entity": [
            {"role": "source", "what": {"reference": "DocumentReference/kela-paatos-makela"}}
        ],
        "signature": [
            {
                "type": [coding("urn:iso-astm:E1762-95:2013", "1.2.840.10065.1.12.1.1")],
                "when": "2025-02-10T09:31:02Z",
                "who": {"reference": "Organization/kela"},
                "sigFormat": "application/jose",
                "data": "ZXlKaGJHY2lPaUpGVXpJMU5pSjkuLi4=",
            }
        ],
    }


def audit_event() -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "id": "luovutus-makela",
        "type": coding("http://dicom.nema.org/resources/ontology/DCM", "110106", "Export"),
        "subtype": [coding("http://hl7.org/fhir/restful-interaction", "read")],
        "action": "R",
        "period": {"start": "2025-02-10T09:40:00+02:00", "end": "2025-02-10T09:40:01+02:00"},
        "recorded": "2025-02-10T09:40:01.482+02:00",
        "outcome": "0",
        "outcomeDesc": "Luovutettu suostumuksen perusteella",
        "purposeOfEvent": [concept("http://terminology.hl7.org/CodeSystem/v3-ActReason", "PATRQT")],
        "agent": [
            {
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"
                ),
                "who": {"reference": "Practitioner/sosiaalityo-nieminen"},
                "requestor": True,
                "network": {"address": "10.20.30.40", "type": "2"},
                "purposeOfUse": [
                    concept("http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT")
                ],
            }
        ],
        "source": {
            "site": "silta-gateway",
            "observer": {"reference": "Organization/varha"},
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")],
        },
        "entity": [
            {
                "what": {"reference": "Patient/pat-makela"},
                "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1"),
                "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "1"),
                "query": "UGF0aWVudD9pZGVudGlmaWVyPXVybjpvaWQ6MS4yLjI0Ni4yMXw=",
                "detail": [{"type": "suostumus", "valueString": "Consent/suostumus-makela"}],
            }
        ],
    }


def subscription() -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "id": "kela-tehtavat",
        "status": "requested",
        "contact": [{"system": "email", "value": "integraatio@kela.example.fi"}],
        "end": "2025-12-31T23:59:59Z",
        "reason": "Kela seuraa sille osoitettuja tehtäviä",
        "criteria": "Task?owner=Organization/kela&status=requested",
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://fhir.kela.example.fi/notifications",
            "payload": "application/fhir+json",
            "header": ["Authorization: Bearer placeholder-token"],
        },
    }


def measure_report() -> dict[str, Any]:
    return {
        "resourceType": "MeasureReport",
        "id": "varha-2025q1",
        "status": "complete",
        "type": "summary",
        "measure": "https://silta.example.org/fhir/Measure/huoli-ilmoitusten-kasittelyaika",
        "date": "2025-04-02T08:00:00+03:00",
        "reporter": {"reference": "Organization/varha"},
        "period": {"start": "2025-01-01", "end": "2025-03-31"},
        "improvementNotation": concept(
            "http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "increase"
        ),
        "group": [
            {
                "code": {"text": "Käsitelty kolmessa arkipäivässä"},
                "population": [
                    {
                        "code": concept(
                            "http://terminology.hl7.org/CodeSystem/measure-population",
                            "denominator",
                        ),
                        "count": 160,
                    },
                    {
                        "code": concept(
                            "http://terminology.hl7.org/CodeSystem/measure-population", "numerator"
                        ),
                        "count": 140,
                    },
                ],
                "measureScore": {"value": 0.875},
                "stratifier": [
                    {
                        "code": [{"text": "Kunta"}],
                        "stratum": [
                            {
                                "value": concept(MUNICIPALITY_SYSTEM, "853", "Turku"),
                                "population": [
                                    {
                                        "code": concept(
                                            "http://terminology.hl7.org/CodeSystem/measure-population",
                                            "numerator",
                                        ),
                                        "count": 61,
                                    }
                                ],
                                "measureScore": {"value": 0.9},
                            }
                        ],
                    }
                ],
            }
        ],
    }


def outcome() -> dict[str, Any]:
    resource = operation_outcome(
        [
            Issue(
                "error",
                "required",
                "Missing required element Patient.link[0].other.",
                ("Patient.link[0].other",),
            ),
            Issue("warning", "business-rule", 'Henkilötunnus "<puuttuu>" & nimi'),
        ]
    )
    resource["issue"][1]["details"] = {"text": "Lisätiedot"}
    resource["issue"][1]["location"] = ["/f:Patient/f:identifier"]
    return resource


def searchset() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": "d6c1f6a2-3c1e-4f57-9d1b-6c61b8f0a001",
        "meta": {"lastUpdated": "2025-02-10T10:00:00.000+02:00"},
        "type": "searchset",
        "total": 1,
        "link": [
            {
                "relation": "self",
                "url": "https://silta.example.org/fhir/Patient?identifier=urn:oid:1.2.246.21|"
                + MAKELA_HETU
                + "&_include=Patient:organization",
            },
            {"relation": "next", "url": "https://silta.example.org/fhir/Patient?_cursor=abc"},
        ],
        "entry": [
            {
                "fullUrl": "https://silta.example.org/fhir/Patient/pat-makela",
                "resource": patient(),
                "search": {"mode": "match", "score": 1},
            },
            {
                "fullUrl": "https://silta.example.org/fhir/Organization/varha",
                "resource": organization(),
                "search": {"mode": "include"},
            },
            {"resource": outcome(), "search": {"mode": "outcome"}},
        ],
    }


def history() -> dict[str, Any]:
    updated = patient()
    updated["meta"]["versionId"] = "2"
    return {
        "resourceType": "Bundle",
        "id": "historia",
        "type": "history",
        "total": 2,
        "entry": [
            {
                "fullUrl": "https://silta.example.org/fhir/Patient/pat-makela",
                "request": {"method": "DELETE", "url": "Patient/pat-makela"},
                "response": {
                    "status": "204 No Content",
                    "etag": 'W/"3"',
                    "lastModified": "2025-02-11T08:00:00Z",
                },
            },
            {
                "fullUrl": "https://silta.example.org/fhir/Patient/pat-makela",
                "resource": updated,
                "request": {"method": "PUT", "url": "Patient/pat-makela"},
                "response": {
                    "status": "200 OK",
                    "etag": 'W/"2"',
                    "lastModified": "2025-02-03T08:15:30.000Z",
                },
            },
        ],
    }


def transaction_response() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": "vastaus",
        "type": "transaction-response",
        "entry": [
            {
                "response": {
                    "status": "201 Created",
                    "location": "ServiceRequest/huoli-makela/_history/1",
                    "etag": 'W/"1"',
                    "lastModified": "2025-02-10T09:30:00.000+02:00",
                    "outcome": operation_outcome([Issue("information", "informational", "Luotu")]),
                }
            },
            {"response": {"status": "200 OK", "location": "Task/tehtava-makela/_history/4"}},
        ],
    }


def capability_statement() -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2025-02-01",
        "publisher": "Silta",
        "kind": "instance",
        "software": {"name": "Silta", "version": "0.1.0"},
        "implementation": {
            "description": "Silta-yhdyskäytävä",
            "url": "https://silta.example.org/fhir",
        },
        "fhirVersion": "4.0.1",
        "format": ["json", "xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": True,
                    "service": [
                        concept(
                            "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "SMART-on-FHIR",
                        )
                    ],
                },
                "resource": [
                    {
                        "type": "Patient",
                        "interaction": [
                            {"code": "read"},
                            {"code": "vread"},
                            {"code": "search-type"},
                        ],
                        "versioning": "versioned",
                        "readHistory": True,
                        "updateCreate": False,
                        "conditionalCreate": True,
                        "conditionalDelete": "not-supported",
                        "referencePolicy": ["literal", "local"],
                        "searchInclude": ["Patient:organization"],
                        "searchParam": [
                            {
                                "name": "identifier",
                                "definition": "http://hl7.org/fhir/SearchParameter/Patient-identifier",
                                "type": "token",
                                "documentation": "Henkilötunnus: urn:oid:1.2.246.21|DDMMYY-NNNC",
                            }
                        ],
                    }
                ],
                "interaction": [{"code": "transaction"}, {"code": "history-system"}],
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        ],
    }


EXAMPLES: dict[str, Any] = {
    "Patient": patient,
    "Organization": organization,
    "Practitioner": practitioner,
    "PractitionerRole": practitioner_role,
    "Endpoint": endpoint,
    "CareTeam": care_team,
    "ServiceRequest": service_request,
    "Consent": consent,
    "CarePlan": care_plan,
    "Goal": goal,
    "Task": task,
    "Communication": communication,
    "DocumentReference": document_reference,
    "Provenance": provenance,
    "AuditEvent": audit_event,
    "Subscription": subscription,
    "MeasureReport": measure_report,
    "Bundle-searchset": searchset,
    "Bundle-history": history,
    "Bundle-transaction-response": transaction_response,
    "OperationOutcome": outcome,
    "CapabilityStatement": capability_statement,
}


def xml(body: str) -> bytes:
    return body.encode("utf-8")


def parse_xml(body: str | bytes) -> dict[str, Any]:
    return parse_body(body if isinstance(body, bytes) else xml(body), XML_TYPE)


# ---------------------------------------------------------------------------
# Test HETUs
# ---------------------------------------------------------------------------


def test_example_hetus_are_valid_test_codes() -> None:
    for code in (MAKELA_HETU, LAHTINEN_HETU):
        ddmmyy, number, check = code[:6], code[7:10], code[10]
        assert 900 <= int(number) <= 999
        assert HETU_CHECK_CHARS[int(ddmmyy + number) % 31] == check
    assert (MAKELA_HETU, LAHTINEN_HETU) == ("240679-931R", "030512A9689")
    assert business_id("3221311") == "3221311-5"


# ---------------------------------------------------------------------------
# Negotiation
# ---------------------------------------------------------------------------

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "format_param", "expected"),
    [
        (None, None, WireFormat.JSON),
        ("", None, WireFormat.JSON),
        ("*/*", None, WireFormat.JSON),
        ("application/fhir+json", None, WireFormat.JSON),
        ("application/json", None, WireFormat.JSON),
        ("application/fhir+xml", None, WireFormat.XML),
        ("application/xml", None, WireFormat.XML),
        ("text/xml", None, WireFormat.XML),
        ("application/fhir+json; fhirVersion=4.0", None, WireFormat.JSON),
        ("application/fhir+xml; charset=utf-8", None, WireFormat.XML),
        (BROWSER, None, WireFormat.JSON),
        ("text/html", None, WireFormat.JSON),
        ("application/fhir+xml;q=0.5, application/fhir+json;q=0.9", None, WireFormat.JSON),
        ("application/fhir+json;q=0.5, application/fhir+xml", None, WireFormat.XML),
        ("application/fhir+xml, application/fhir+json", None, WireFormat.XML),
        ("image/png, application/xml;q=0.1", None, WireFormat.XML),
        ("application/fhir+xml;q=0, */*", None, WireFormat.JSON),
        ("application/fhir+json;q=0, */*", None, WireFormat.XML),
        ("application/fhir+json;fhirVersion=3.0, application/fhir+xml", None, WireFormat.XML),
        ("application/fhir+json", "xml", WireFormat.XML),
        ("application/fhir+xml", "json", WireFormat.JSON),
        (None, "text/xml", WireFormat.XML),
        (None, "application/xml", WireFormat.XML),
        (None, "application/fhir+xml", WireFormat.XML),
        (None, "application/fhir xml", WireFormat.XML),  # '+' decoded as space
        (None, "application/json", WireFormat.JSON),
        (None, "application/fhir+json", WireFormat.JSON),
        ("image/png", "json", WireFormat.JSON),
        ("application/fhir+xml", "", WireFormat.XML),
    ],
)
def test_negotiation(accept: str | None, format_param: str | None, expected: WireFormat) -> None:
    assert negotiate_response_format(accept, format_param) is expected


@pytest.mark.parametrize(
    ("accept", "format_param"),
    [
        ("image/png", None),
        ("application/pdf, image/*", None),
        ("application/fhir+xml;q=0", None),
        ("application/fhir+json;q=0, application/fhir+xml;q=0, */*", None),
        ("application/fhir+json; fhirVersion=5.0", None),
        (None, "html"),
        (None, "ttl"),
        (None, "application/fhir+json;fhirVersion=3.0"),
    ],
)
def test_negotiation_not_acceptable(accept: str | None, format_param: str | None) -> None:
    with pytest.raises(NotAcceptable) as caught:
        negotiate_response_format(accept, format_param)
    assert "application/fhir+json" in caught.value.diagnostics


def test_media_types() -> None:
    assert WireFormat.JSON.media_type == "application/fhir+json"
    assert WireFormat.XML.media_type == "application/fhir+xml"


# ---------------------------------------------------------------------------
# JSON bodies
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "", JSON_TYPE, "application/json", "application/fhir+json; charset=UTF-8"],
)
def test_parse_json(content_type: str | None) -> None:
    resource = patient()
    assert parse_body(orjson.dumps(resource), content_type) == resource


def test_parse_json_with_byte_order_mark() -> None:
    assert parse_body(b"\xef\xbb\xbf" + orjson.dumps(patient()), JSON_TYPE) == patient()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"resourceType": "Patient",', "not valid JSON"),
        (b"<Patient/>", "not valid JSON"),
        (b'[{"resourceType": "Patient"}]', "must be a JSON object"),
        (b'"Patient"', "must be a JSON object"),
        (b'{"id": "x"}', "no resourceType"),
        (b'{"resourceType": 5}', "no resourceType"),
        (b'{"resourceType": ""}', "no resourceType"),
    ],
)
def test_parse_json_errors(body: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_body(body, JSON_TYPE)
    assert fragment in caught.value.diagnostics


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/fhir+json; charset=latin1"],
)
def test_unsupported_media_type(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_body(b"{}", content_type)
    assert "not supported" in caught.value.diagnostics


# ---------------------------------------------------------------------------
# XML bodies
# ---------------------------------------------------------------------------


def test_parse_xml_shape() -> None:
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Patient xmlns="{FHIR_NS}">
  <id value="pat-makela"/>
  <meta><lastUpdated value="2025-02-03T08:15:30.000Z"/></meta>
  <text>
    <status value="generated"/>
    <div xmlns="{XHTML_NS}"><p>Eero &amp; <b>Turku</b></p></div>
  </text>
  <extension url="https://silta.example.org/fhir/StructureDefinition/kotikunta">
    <valueCoding><system value="{MUNICIPALITY_SYSTEM}"/><code value="853"/></valueCoding>
  </extension>
  <identifier id="hetu"><system value="{HETU_OID}"/><value value="{MAKELA_HETU}"/></identifier>
  <active value="true"/>
  <name>
    <family value="Mäkelä"/>
    <given value="Eero"/>
    <given id="g2">
      <extension url="http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier">
        <valueCode value="CL"/>
      </extension>
    </given>
    <given value="Juhani"/>
  </name>
  <birthDate value="1979-06-24">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1979-06-24T04:35:00+03:00"/>
    </extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
  <contained><Organization><id value="o1"/><name value="Varha"/></Organization></contained>
</Patient>"""
    assert parse_xml(body) == {
        "resourceType": "Patient",
        "id": "pat-makela",
        "meta": {"lastUpdated": "2025-02-03T08:15:30.000Z"},
        "text": {
            "status": "generated",
            "div": f'<div xmlns="{XHTML_NS}"><p>Eero &amp; <b>Turku</b></p></div>',
        },
        "extension": [
            {
                "url": "https://silta.example.org/fhir/StructureDefinition/kotikunta",
                "valueCoding": {"system": MUNICIPALITY_SYSTEM, "code": "853"},
            }
        ],
        "identifier": [{"id": "hetu", "system": HETU_OID, "value": MAKELA_HETU}],
        "active": True,
        "name": [
            {
                "family": "Mäkelä",
                "given": ["Eero", None, "Juhani"],
                "_given": [
                    None,
                    {
                        "id": "g2",
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier",
                                "valueCode": "CL",
                            }
                        ],
                    },
                    None,
                ],
            }
        ],
        "birthDate": "1979-06-24",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1979-06-24T04:35:00+03:00",
                }
            ]
        },
        "multipleBirthInteger": 2,
        "contained": [{"resourceType": "Organization", "id": "o1", "name": "Varha"}],
    }


def test_parse_xml_typed_primitives() -> None:
    body = f"""<Task xmlns="{FHIR_NS}"><status value="ready"/><intent value="order"/>
      <input><type><text value="a"/></type><valueDecimal value="1234.50"/></input>
      <input><type><text value="b"/></type><valueDecimal value="12"/></input>
      <input><type><text value="c"/></type><valueBoolean value="false"/></input>
      <input><type><text value="d"/></type><valueInteger value="-3"/></input>
      <input><type><text value="e"/></type><valueString value="  välilyönnit  "/></input>
    </Task>"""
    values = [
        next(v for k, v in i.items() if k.startswith("value")) for i in parse_xml(body)["input"]
    ]
    assert values == [1234.5, 12, False, -3, "  välilyönnit  "]
    assert isinstance(values[1], int)


def test_parse_xml_with_prefixed_namespace() -> None:
    body = f'<f:Patient xmlns:f="{FHIR_NS}"><f:id value="p1"/><f:active value="false"/></f:Patient>'
    assert parse_xml(body) == {"resourceType": "Patient", "id": "p1", "active": False}


def test_parse_xml_bundle_entries() -> None:
    resource = transaction_response()
    assert parse_xml(render(resource, WireFormat.XML)) == resource


@pytest.mark.parametrize(
    ("body", "fragment", "expression"),
    [
        ("<Patient", "not well-formed XML", None),
        ("<Patient><id value='1'/></Patient>", "must be in the FHIR namespace", None),
        ('<Patient xmlns="http://hl7.org/fhir/other"/>', "must be in the FHIR namespace", None),
        (f'<Potilas xmlns="{FHIR_NS}"/>', "'Potilas' is not a FHIR R4 resource type", "Potilas"),
        (f'<SubscriptionTopic xmlns="{FHIR_NS}"/>', "not a FHIR R4 resource type", None),
        (
            f'<Patient xmlns="{FHIR_NS}"><nimi value="x"/></Patient>',
            "Unknown element 'nimi'",
            "Patient.nimi",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><name><etunimi value="x"/></name></Patient>',
            "Unknown element 'etunimi'",
            "Patient.name[0].etunimi",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><active value="yes"/></Patient>',
            "Invalid boolean value 'yes'",
            "Patient.active",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><multipleBirthInteger value="2.0"/></Patient>',
            "Invalid integer value",
            "Patient.multipleBirthInteger",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><name><given value="a"/><given value="b" x="1"/></name>'
            "</Patient>",
            "Unknown attribute 'x'",
            "Patient.name[0].given[1]",
        ),
        (f'<Patient xmlns="{FHIR_NS}" foo="bar"/>', "Unknown attribute 'foo'", "Patient"),
        (
            f'<Patient xmlns="{FHIR_NS}"><active value="true"/><active value="false"/></Patient>',
            "appears more than once",
            "Patient",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}">teksti<active value="true"/></Patient>',
            "Text content is not allowed",
            "Patient",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><gender/></Patient>',
            "neither a value nor extensions",
            "Patient.gender",
        ),
        (f'<Patient xmlns="{FHIR_NS}"><name/></Patient>', "is empty", "Patient.name[0]"),
        (
            f'<Patient xmlns="{FHIR_NS}"><id value="x"/><extension><url value="u"/></extension>'
            "</Patient>",
            "Unknown element 'url'",
            "Patient.extension[0].url",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><x:active xmlns:x="urn:x" value="true"/></Patient>',
            "not in the FHIR namespace",
            "Patient",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><text><status value="generated"/><div value="x"/></text>'
            "</Patient>",
            "must be an XHTML div",
            "Patient.text.div",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><contained><Foo/></contained></Patient>',
            "'Foo' is not a FHIR R4 resource type",
            "Patient.contained[0]",
        ),
        (
            f'<Patient xmlns="{FHIR_NS}"><contained/></Patient>',
            "exactly one FHIR resource",
            "Patient.contained[0]",
        ),
    ],
)
def test_parse_xml_errors(body: str, fragment: str, expression: str | None) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_xml(body)
    error = caught.value
    assert fragment in error.diagnostics
    if expression is not None:
        assert error.issues[0].expression == (expression,)


XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE Patient [ <!ENTITY x SYSTEM "file:///etc/passwd"> ]>
<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Patient [ <!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p; ]>
<Patient xmlns="http://hl7.org/fhir"/>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Patient SYSTEM "file:///etc/passwd">
<Patient xmlns="http://hl7.org/fhir"/>"""


def billion_laughs() -> bytes:
    entities = ['<!ENTITY lol "lol">']
    for level in range(1, 10):
        previous = "lol" if level == 1 else f"lol{level - 1}"
        entities.append(f'<!ENTITY lol{level} "{("&" + previous + ";") * 10}">')
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [' + "".join(entities) + "]>\n"
        '<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>'
    ).encode()


@pytest.mark.parametrize(
    "body",
    [XXE, PARAMETER_ENTITY, EXTERNAL_DTD, billion_laughs()],
    ids=["xxe", "parameter-entity", "external-dtd", "billion-laughs"],
)
def test_dtds_and_entities_are_rejected(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(BadRequest) as caught:
        parse_body(body, XML_TYPE)
    assert time.perf_counter() - started < 0.05
    assert "DTDs and entities are not allowed" in caught.value.diagnostics
    assert "root:" not in caught.value.diagnostics


def test_xxe_in_another_encoding_is_not_expanded() -> None:
    body = XXE.replace(b'encoding="UTF-8"', b'encoding="UTF-16"').decode().encode("utf-16")
    started = time.perf_counter()
    with pytest.raises(BadRequest) as caught:
        parse_body(body, XML_TYPE)
    assert time.perf_counter() - started < 0.05
    assert "root:" not in caught.value.diagnostics


def test_billion_laughs_in_another_encoding_is_rejected_fast() -> None:
    body = billion_laughs().decode().encode("utf-16")
    started = time.perf_counter()
    with pytest.raises(BadRequest):
        parse_body(body, XML_TYPE)
    assert time.perf_counter() - started < 0.05


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def test_render_json() -> None:
    resource = patient()
    assert orjson.loads(render(resource, WireFormat.JSON)) == resource
    pretty = render(resource, WireFormat.JSON, pretty=True)
    assert pretty.startswith(b'{\n  "resourceType": "Patient"')


def test_render_xml_is_fhir_xml() -> None:
    body = render(patient(), WireFormat.XML)
    assert body.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Patient xmlns="http://hl7.org/fhir">'
    )
    root = etree.fromstring(body)
    assert root.tag == f"{{{FHIR_NS}}}Patient"
    assert all(
        e.tag.startswith(f"{{{FHIR_NS}}}")
        for e in root.iter()
        if not e.tag.startswith(f"{{{XHTML_NS}}}")
    )
    name = root.find(f"{{{FHIR_NS}}}name")
    assert [c.get("value") for c in name.findall(f"{{{FHIR_NS}}}given")] == ["Eero", "Juhani"]
    assert name.findall(f"{{{FHIR_NS}}}given")[1].get("id") == "kutsumanimi"
    extension = root.find(f"{{{FHIR_NS}}}address/{{{FHIR_NS}}}extension")
    assert extension.get("url") == MUNICIPALITY_EXT
    assert root.find(f"{{{FHIR_NS}}}text/{{{XHTML_NS}}}div") is not None


def test_render_xml_uses_r4_element_order() -> None:
    resource = patient()
    shuffled = dict(reversed(list(resource.items())))
    assert render(shuffled, WireFormat.XML) == render(resource, WireFormat.XML)
    root = etree.fromstring(render(shuffled, WireFormat.XML))
    names = [etree.QName(c).localname for c in root]
    order = type_info("Patient").order
    assert names == sorted(names, key=lambda n: order[n])
    assert names[:3] == ["id", "meta", "text"]


def test_render_xml_escapes_values() -> None:
    tricky = "Lainausmerkit \" ja ' & <tagit> sekä\nrivinvaihto\tsarkain\r ja ääkköset"
    resource = {"resourceType": "Patient", "name": [{"text": tricky}]}
    body = render(resource, WireFormat.XML)
    assert parse_xml(body) == resource


def test_render_xml_replaces_characters_xml_cannot_hold() -> None:
    resource = {"resourceType": "Patient", "name": [{"text": "a\x00b\x1fc"}]}
    assert parse_xml(render(resource, WireFormat.XML))["name"][0]["text"] == "a\ufffdb\ufffdc"


def test_render_xml_narrative_variants() -> None:
    no_namespace = {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div><p>x</p></div>"},
    }
    parsed = parse_xml(render(no_namespace, WireFormat.XML))
    assert parsed["text"]["div"] == f'<div xmlns="{XHTML_NS}"><p>x</p></div>'
    not_xml = {"resourceType": "Patient", "text": {"status": "generated", "div": "Potilas <b>"}}
    parsed = parse_xml(render(not_xml, WireFormat.XML))
    assert parsed["text"]["div"].startswith(f'<div xmlns="{XHTML_NS}">')
    plain = {"resourceType": "Patient", "text": {"status": "generated", "div": "pelkkä teksti"}}
    parsed = parse_xml(render(plain, WireFormat.XML))
    assert parsed["text"]["div"] == f'<div xmlns="{XHTML_NS}">pelkkä teksti</div>'


def test_render_xml_keeps_content_outside_the_r4_structure() -> None:
    resource = {
        "resourceType": "Patient",
        "id": "p1",
        "tuntematon": {"arvo": "x"},
        "active": True,
        "fhir_comments": "ignored",
    }
    root = etree.fromstring(render(resource, WireFormat.XML))
    assert [etree.QName(c).localname for c in root] == ["id", "active", "tuntematon"]
    unknown = {"resourceType": "EffectEvidenceSynthesis", "id": "e1", "status": "draft"}
    root = etree.fromstring(render(unknown, WireFormat.XML))
    assert root.tag == f"{{{FHIR_NS}}}EffectEvidenceSynthesis"
    assert root.find(f"{{{FHIR_NS}}}status").get("value") == "draft"


def test_render_xml_of_r4_extension_value_meta() -> None:
    resource = {
        "resourceType": "Patient",
        "extension": [{"url": "https://silta.example.org/x", "valueMeta": {"versionId": "7"}}],
    }
    assert parse_xml(render(resource, WireFormat.XML)) == resource


def test_render_xml_without_resource_type_is_an_error() -> None:
    with pytest.raises(ValueError):
        render({"id": "x"}, WireFormat.XML)


def test_operation_outcome_renders_in_both_formats() -> None:
    resource = outcome()
    assert parse_xml(render(resource, WireFormat.XML)) == resource
    assert orjson.loads(render(resource, WireFormat.JSON)) == resource


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.parametrize("pretty", [False, True], ids=["compact", "pretty"])
def test_xml_round_trip(name: str, pretty: bool) -> None:
    resource = EXAMPLES[name]()
    original = copy.deepcopy(resource)
    body = render(resource, WireFormat.XML, pretty=pretty)
    assert resource == original
    assert parse_body(body, XML_TYPE) == original
    assert parse_body(render(resource, WireFormat.JSON, pretty=pretty), JSON_TYPE) == original


def _comparable(value: Any, key: str = "") -> Any:
    """Evens out two gaps of the fhir.resources XML reader: it drops the ids of
    primitive elements and writes narrative text as character references."""
    if isinstance(value, dict):
        return {
            k: _comparable(v, k)
            for k, v in value.items()
            if not (key.startswith("_") and k == "id")
        }
    if isinstance(value, list):
        return [_comparable(v, key) for v in value]
    if key == "div":
        return etree.tostring(etree.fromstring(value), encoding="unicode")
    return value


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_rendered_xml_reads_the_same_in_the_r4b_model(name: str) -> None:
    """An independent reader (fhir.resources) sees the same content in our XML."""
    resource = EXAMPLES[name]()
    model = get_fhir_model_class(resource["resourceType"])
    from_xml = model.model_validate_xml(render(resource, WireFormat.XML)).model_dump(mode="json")
    expected = model.model_validate(resource).model_dump(mode="json")
    assert _comparable(from_xml) == _comparable(expected)


def test_pretty_xml_is_indented() -> None:
    lines = render(endpoint(), WireFormat.XML, pretty=True).decode().splitlines()
    assert lines[1] == f'<Endpoint xmlns="{FHIR_NS}">'
    assert lines[2] == '  <id value="varha-fhir"/>'
    assert lines[-1] == "</Endpoint>"


def test_load_type_infos_reaches_every_data_type_of_a_resource() -> None:
    loaded = load_type_infos(["Patient"])
    # Patient.contact, .name, .identifier.period and .link.other's Reference.
    assert {"Patient", "PatientContact", "HumanName", "Identifier", "Period"} <= loaded
    assert {"Reference", "CodeableConcept", "Coding", "Extension"} <= loaded
    assert "string" not in loaded  # primitives have no structure of their own
