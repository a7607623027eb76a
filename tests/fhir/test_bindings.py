"""Required terminology bindings (R4 terminologies.html §4.1.0.1): codes of elements
with a required binding must come from the bound ValueSet."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.errors import Issue
from gateway.fhir.bindings import check_required_bindings
from gateway.fhir.resource_types import STORED_TYPES
from schemas import load_json
from tests.fixtures import all_fixtures, fixture_names, load_fixture

VS = "http://hl7.org/fhir/ValueSet/"


def found(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(expression, definition path named in the diagnostics) of each issue."""
    pairs = []
    for issue in check_required_bindings(resource):
        assert issue.severity == "error"
        assert issue.code == "code-invalid"
        assert len(issue.expression) == 1
        definition = issue.diagnostics.split(" for ", 1)[1].split(" ", 1)[0]
        pairs.append((issue.expression[0], definition))
    return pairs


def task(**changes: Any) -> dict[str, Any]:
    return {**load_fixture("task-huoli-aijala"), **changes}


def service_request(**changes: Any) -> dict[str, Any]:
    return {**load_fixture("servicerequest-huoli-aijala"), **changes}


def patient(**changes: Any) -> dict[str, Any]:
    return {**load_fixture("patient-aijala"), **changes}


# ---------------------------------------------------------------------------
# Valid resources
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", fixture_names())
def test_every_fixture_passes(name: str) -> None:
    assert check_required_bindings(load_fixture(name)) == []


def test_the_fixtures_cover_every_stored_type() -> None:
    covered = {fixture["resourceType"] for fixture in all_fixtures()}
    assert set(STORED_TYPES) <= covered


def test_every_code_of_the_bound_value_set_passes() -> None:
    task_statuses = load_json("fhir/required-bindings.json")["valueSets"][VS + "task-status"]
    assert sorted(task_statuses) == sorted(
        [
            "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
            "in-progress", "on-hold", "failed", "completed", "entered-in-error",
        ]
    )  # fmt: skip
    for status in task_statuses:
        assert check_required_bindings(task(status=status)) == []


def test_the_data_file_describes_every_stored_type() -> None:
    types = load_json("fhir/required-bindings.json")["types"]
    for name in STORED_TYPES:
        assert name in types
    assert types["Task"]["codes"]["status"] == VS + "task-status"
    assert types["Patient"]["children"]["name"] == "HumanName"
    assert types["Patient.contact"]["children"]["name"] == "HumanName"
    assert types["Task.restriction"]["children"]["period"] == "Period"
    assert types["Consent.provision"]["children"]["provision"] == "Consent.provision"
    assert types["Extension"]["children"]["valueQuantity"] == "Quantity"


# ---------------------------------------------------------------------------
# Codes outside the ValueSet
# ---------------------------------------------------------------------------


def test_issue_of_a_bad_task_status() -> None:
    issues = check_required_bindings(task(status="not-a-status"))
    assert issues == [
        Issue(
            "error",
            "code-invalid",
            "'not-a-status' is not a valid code for Task.status "
            "(required binding to http://hl7.org/fhir/ValueSet/task-status)",
            ("Task.status",),
        )
    ]


@pytest.mark.parametrize("element", ["status", "intent", "priority"])
def test_bad_task_codes(element: str) -> None:
    assert found(task(**{element: "bogus"})) == [(f"Task.{element}", f"Task.{element}")]


@pytest.mark.parametrize("element", ["status", "intent", "priority"])
def test_bad_service_request_codes(element: str) -> None:
    expected = [(f"ServiceRequest.{element}", f"ServiceRequest.{element}")]
    assert found(service_request(**{element: "bogus"})) == expected


def test_codes_of_another_value_set_are_refused() -> None:
    # "requested" is a task-status code, not a request-status code.
    assert found(service_request(status="requested")) == [
        ("ServiceRequest.status", "ServiceRequest.status")
    ]
    # "directive" is a request-intent code that task-intent lacks.
    assert found(task(intent="directive")) == [("Task.intent", "Task.intent")]


def test_codes_are_case_sensitive() -> None:
    assert found(patient(gender="Female")) == [("Patient.gender", "Patient.gender")]


def test_bad_patient_gender() -> None:
    assert found(patient(gender="bogus")) == [("Patient.gender", "Patient.gender")]


def test_datatype_codes_have_indexed_paths() -> None:
    resource = patient()
    resource["name"][0]["use"] = "nickname-ish"
    resource["telecom"] = [
        {"system": "phone", "value": "+358 40 123 4567"},
        {"system": "pager-ish", "value": "x", "use": "car"},
    ]
    resource["identifier"][0]["use"] = "private"
    resource["address"][0]["type"] = "mailbox"
    assert found(resource) == [
        ("Patient.identifier[0].use", "Identifier.use"),
        ("Patient.name[0].use", "HumanName.use"),
        ("Patient.telecom[1].system", "ContactPoint.system"),
        ("Patient.telecom[1].use", "ContactPoint.use"),
        ("Patient.address[0].type", "Address.type"),
    ]


def test_bad_human_name_use_in_patient_contact() -> None:
    resource = patient(
        contact=[
            {"name": {"family": "Äijälä"}},
            {"name": {"use": "bogus", "family": "Virtanen"}, "gender": "other"},
        ]
    )
    assert found(resource) == [("Patient.contact[1].name.use", "HumanName.use")]


def test_bad_consent_provision_type() -> None:
    resource = load_fixture("consent-aijala")
    resource["provision"]["type"] = "allow"
    assert found(resource) == [("Consent.provision.type", "Consent.provision.type")]


def test_nested_consent_provisions_are_checked() -> None:
    resource = load_fixture("consent-aijala")
    resource["provision"]["provision"] = [
        {"type": "deny"},
        {"type": "maybe", "data": [{"meaning": "everything", "reference": {"reference": "#"}}]},
    ]
    assert found(resource) == [
        ("Consent.provision.provision[1].type", "Consent.provision.type"),
        ("Consent.provision.provision[1].data[0].meaning", "Consent.provision.data.meaning"),
    ]


def test_repeated_codes_have_indexes() -> None:
    resource = load_fixture("role-kela-asiakkuusvastaava")
    resource["availableTime"] = [{"daysOfWeek": ["mon", "monday", "fri"]}]
    assert found(resource) == [
        (
            "PractitionerRole.availableTime[0].daysOfWeek[1]",
            "PractitionerRole.availableTime.daysOfWeek",
        )
    ]


def test_codes_in_choice_elements_and_nested_datatypes() -> None:
    resource = service_request(
        occurrenceTiming={"repeat": {"frequency": 1, "period": 1, "periodUnit": "week"}},
        quantityQuantity={"value": 2, "comparator": "=="},
    )
    resource.pop("occurrencePeriod")
    assert found(resource) == [
        ("ServiceRequest.occurrenceTiming.repeat.periodUnit", "Timing.repeat.periodUnit"),
        ("ServiceRequest.quantityQuantity.comparator", "Quantity.comparator"),
    ]


def test_bad_code_in_a_contained_resource() -> None:
    contained = {"resourceType": "Patient", "id": "p1", "gender": "unknown-ish"}
    resource = task(contained=[{"resourceType": "Organization", "id": "o1"}, contained])
    assert found(resource) == [("Task.contained[1].gender", "Patient.gender")]


def test_bad_code_in_a_bundle_entry() -> None:
    bundle = load_fixture("transaction-notification")
    bundle["entry"][2]["resource"]["status"] = "bogus"
    bundle["entry"][2]["request"]["method"] = "FETCH"
    assert [e["resource"]["resourceType"] for e in bundle["entry"]][2] == "Task"
    assert found(bundle) == [
        ("Bundle.entry[2].resource.status", "Task.status"),
        ("Bundle.entry[2].request.method", "Bundle.entry.request.method"),
    ]


def test_bad_bundle_type() -> None:
    bundle = load_fixture("transaction-notification")
    bundle["type"] = "transactional"
    assert found(bundle) == [("Bundle.type", "Bundle.type")]


def test_codes_inside_extensions() -> None:
    resource = patient(
        extension=[
            {
                "url": "https://example.org/fhir/StructureDefinition/former-name",
                "valueHumanName": {"use": "bogus", "family": "Virtanen"},
            }
        ],
        _birthDate={
            "extension": [{"url": "https://example.org/ext", "valueQuantity": {"comparator": "~"}}]
        },
    )
    assert found(resource) == [
        ("Patient.extension[0].valueHumanName.use", "HumanName.use"),
        ("Patient.birthDate.extension[0].valueQuantity.comparator", "Quantity.comparator"),
    ]


def test_narrative_status() -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'
    resource = patient(text={"status": "written", "div": div})
    assert found(resource) == [("Patient.text.status", "Narrative.status")]


# ---------------------------------------------------------------------------
# What the check leaves to the structure validation
# ---------------------------------------------------------------------------


def test_unknown_elements_and_wrong_json_types_are_skipped() -> None:
    resource = task(status=5, intent=["order"], priority=None, unknownElement={"use": "x"})
    resource["requester"] = "Organization/kela"
    assert check_required_bindings(resource) == []


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation", "status": "bogus"},
        {"resourceType": "HumanName", "use": "bogus"},
        {"resourceType": "Task.restriction"},
        {"status": "bogus"},
        {"resourceType": 5},
    ],
)
def test_resources_of_other_types_are_not_checked(resource: dict[str, Any]) -> None:
    assert check_required_bindings(resource) == []


def test_contained_resources_of_other_types_are_skipped() -> None:
    resource = task(contained=[{"resourceType": "Observation", "id": "o", "status": "bogus"}])
    assert check_required_bindings(resource) == []


def test_deep_nesting_is_reported_not_raised() -> None:
    node: dict[str, Any] = {"reference": "Patient/p"}
    root = node
    for _ in range(5000):
        inner: dict[str, Any] = {"value": "x"}
        node["identifier"] = inner
        node = {"reference": "Patient/p"}
        inner["assigner"] = node
    issues = check_required_bindings(task(requester=root))
    assert [issue.code for issue in issues] == ["too-costly"]


def test_the_input_is_not_changed() -> None:
    resource = task(status="bogus")
    before = copy.deepcopy(resource)
    check_required_bindings(resource)
    assert resource == before
