"""Code tables: consistent with the XSDs, published as valid CodeSystems."""

from __future__ import annotations

import json
from typing import Any

import pytest
import xmlschema
from fhir.resources.R4B import get_fhir_model_class

from adapters.kela import code_system, code_table, code_tables
from tests.adapters.kela.support import REPO

SCHEMAS = REPO / "schemas" / "kela"
PROJECT_SYSTEMS = "https://silta.example.org/fhir/CodeSystem/"

# (schema file, simple type) whose enumeration lists exactly the codes of a table
ENUMERATIONS = {
    "language": [("concern-notification-v1.xsd", "ClientLanguageType")],
    "urgency": [("concern-notification-v1.xsd", "UrgencyType")],
    "benefit-type": [("benefit-decision-v1.xsd", "BenefitTypeType")],
    "decision-outcome": [("benefit-decision-v1.xsd", "DecisionOutcomeType")],
    "social-assistance-kind": [("application-forwarding-v1.xsd", "SocialAssistanceKindType")],
    "feedback-status": [("notification-feedback-v1.xsd", "FeedbackStatusType")],
    "business-status": [("notification-feedback-v1.xsd", "BusinessStatusType")],
    "status-reason": [("notification-feedback-v1.xsd", "StatusReasonType")],
}
REASON_TYPES = {
    "Income": "IncomeReasonCodeType",
    "Family": "FamilyReasonCodeType",
    "Health": "HealthReasonCodeType",
    "Housing": "HousingReasonCodeType",
}
TASK_STATUSES = {
    "draft",
    "requested",
    "received",
    "accepted",
    "rejected",
    "ready",
    "cancelled",
    "in-progress",
    "on-hold",
    "failed",
    "completed",
    "entered-in-error",
}


def enumeration(file_name: str, type_name: str) -> list[str]:
    schema = xmlschema.XMLSchema(str(SCHEMAS / file_name))
    simple_type: Any = schema.types[type_name]
    return [str(value) for value in simple_type.enumeration or []]


@pytest.mark.parametrize("table", sorted(ENUMERATIONS))
def test_xsd_enumerations_list_the_table(table: str) -> None:
    codes = [c.code for c in code_table(table).concepts]
    for file_name, type_name in ENUMERATIONS[table]:
        assert enumeration(file_name, type_name) == codes


def test_reason_codes_of_each_field_match_the_xsd() -> None:
    fields = code_table("life-situation-area")
    reasons = code_table("concern-reason")
    for field in fields.concepts:
        [element] = field.map["element"]
        codes = [c.code for c in reasons.concepts if c.parent == field.code]
        assert enumeration("concern-notification-v1.xsd", REASON_TYPES[element]) == codes


def test_note_languages_are_client_languages() -> None:
    note = enumeration("concern-notification-v1.xsd", "NoteLanguageType")
    assert note == ["fi", "sv", "en"]
    assert set(note) <= {c.code for c in code_table("language").concepts}


def test_every_task_status_but_draft_is_reported() -> None:
    reported = [s for c in code_table("feedback-status").concepts for s in c.map["taskStatus"]]
    assert sorted(reported) == sorted(TASK_STATUSES - {"draft"})


def test_urgencies_map_to_request_priorities() -> None:
    priorities = {c.map["priority"][0] for c in code_table("urgency").concepts}
    assert priorities <= {"routine", "urgent", "asap", "stat"}


@pytest.mark.parametrize("name", sorted(code_tables()))
def test_published_code_systems_are_valid(name: str) -> None:
    table = code_table(name)
    if table.external:
        assert not table.url.startswith(PROJECT_SYSTEMS)
        return
    assert table.url.startswith(PROJECT_SYSTEMS)
    resource = code_system(table)
    get_fhir_model_class("CodeSystem").model_validate(resource)
    assert resource["count"] == len(table.concepts)
    assert all(set(c.display) == {"fi", "sv", "en"} for c in table.concepts)


def test_code_system_urls_are_unique() -> None:
    urls = [t.url for t in code_tables().values()]
    assert len(set(urls)) == len(urls)


def test_consent_purpose_is_the_project_purpose_of_use() -> None:
    purpose = json.loads(
        (REPO / "schemas" / "silta" / "CodeSystem-purpose-of-use.json").read_text()
    )
    mapping = json.loads(
        (REPO / "mappings" / "kela" / "concern-notification.inbound.json").read_text("utf-8")
    )
    [consent] = [e for e in mapping["entries"] if e["name"] == "consent"]
    [coding] = consent["resource"]["provision"]["purpose"]
    assert coding["system"] == purpose["url"]
    concept = next(c for c in purpose["concept"] if c["code"] == coding["code"])
    assert coding["display"] == concept["display"]
