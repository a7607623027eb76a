"""Outbound Kela messages: status only, stable message ids, XSD validity, refusals."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import xmlschema
from lxml import etree

from adapters.kela import (
    ErrorCode,
    KelaMessageError,
    build_outbound,
    municipal_assistance_decision,
    notification_feedback,
    outbound_namespace,
    outbound_services,
    serialize,
    stable_message_id,
)
from tests.adapters.kela.support import GOLDEN_DIR, REPO

FEEDBACK = "urn:silta:kela:notification-feedback:1"


def golden_inputs(folder: str, name: str) -> dict[str, Any]:
    path = GOLDEN_DIR / folder / f"{name}.input.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def in_progress() -> dict[str, Any]:
    return golden_inputs("notification-feedback", "in-progress-with-contact")


def decision() -> dict[str, Any]:
    return golden_inputs("municipal-assistance-decision", "partly-granted")


def text_of(element: Any, name: str) -> str | None:
    found = element.find(f"{{{etree.QName(element).namespace}}}{name}")
    return None if found is None else str(found.text)


def schema(file_name: str) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(REPO / "schemas" / "kela" / file_name))


def test_services_and_namespaces() -> None:
    assert set(outbound_services()) == {"NotificationFeedback", "MunicipalAssistanceDecision"}
    assert outbound_namespace("NotificationFeedback") == FEEDBACK


@pytest.mark.parametrize(
    "status",
    [
        "requested",
        "received",
        "accepted",
        "ready",
        "in-progress",
        "on-hold",
        "completed",
        "rejected",
        "cancelled",
        "failed",
        "entered-in-error",
    ],
)
def test_every_reported_task_status_gives_a_valid_message(status: str) -> None:
    inputs = in_progress()
    inputs["task"]["status"] = status
    element = notification_feedback(inputs["task"], inputs["serviceRequest"])
    schema("notification-feedback-v1.xsd").validate(serialize(element).decode("utf-8"))
    assert text_of(element, "Status") is not None


def test_draft_task_is_not_reported() -> None:
    inputs = in_progress()
    inputs["task"]["status"] = "draft"
    with pytest.raises(KelaMessageError) as raised:
        notification_feedback(inputs["task"], inputs["serviceRequest"])
    assert raised.value.code is ErrorCode.UNKNOWN_CODE
    assert "draft" in raised.value.message


def test_feedback_is_status_only() -> None:
    inputs = in_progress()
    inputs["task"]["statusReason"] = {
        "coding": [
            {
                "system": "https://silta.example.org/fhir/CodeSystem/concern-notification-status-reason",
                "code": "client-not-reached",
            }
        ],
        "text": "Puhelin ei vastaa; naapurin mukaan asiakas on sairaalassa.",
    }
    data = serialize(notification_feedback(inputs["task"], inputs["serviceRequest"]))
    text = data.decode("utf-8")
    for secret in (
        inputs["task"]["note"][0]["text"],
        inputs["task"]["businessStatus"]["text"],
        inputs["task"]["statusReason"]["text"],
        inputs["serviceRequest"]["note"][0]["text"],
        inputs["serviceRequest"]["patientInstruction"],
    ):
        assert secret not in text
    assert "<StatusReason>client-not-reached</StatusReason>" in text


def test_contact_only_when_passed() -> None:
    inputs = in_progress()
    without = notification_feedback(inputs["task"], inputs["serviceRequest"])
    assert text_of(without, "Contact") is None
    with_contact = notification_feedback(
        inputs["task"], inputs["serviceRequest"], contact=inputs["contact"]
    )
    contact = with_contact.find(f"{{{FEEDBACK}}}Contact")
    assert [etree.QName(c).localname for c in contact] == ["Name", "Phone", "Email"]


def test_message_id_is_stable_per_task_version() -> None:
    inputs = in_progress()
    first = notification_feedback(inputs["task"], inputs["serviceRequest"])
    again = notification_feedback(copy.deepcopy(inputs["task"]), inputs["serviceRequest"])
    assert text_of(first, "MessageId") == text_of(again, "MessageId")
    assert text_of(first, "MessageId") == stable_message_id(
        "NotificationFeedback", f"Task/{inputs['task']['id']}", "3"
    )
    inputs["task"]["meta"]["versionId"] = "4"
    newer = notification_feedback(inputs["task"], inputs["serviceRequest"])
    assert text_of(newer, "MessageId") != text_of(first, "MessageId")


def test_unstored_task_is_refused() -> None:
    inputs = in_progress()
    del inputs["task"]["meta"]
    with pytest.raises(KelaMessageError) as raised:
        notification_feedback(inputs["task"], inputs["serviceRequest"])
    assert raised.value.code is ErrorCode.BAD_INPUT
    assert "meta.versionId" in raised.value.message


def test_task_must_focus_on_the_service_request() -> None:
    inputs = in_progress()
    inputs["task"]["focus"] = {"reference": "ServiceRequest/another"}
    with pytest.raises(KelaMessageError) as raised:
        notification_feedback(inputs["task"], inputs["serviceRequest"])
    assert raised.value.code is ErrorCode.BAD_INPUT
    assert "Task.focus" in raised.value.message


def test_service_request_without_kela_notification_id_is_refused() -> None:
    inputs = in_progress()
    del inputs["serviceRequest"]["identifier"]
    with pytest.raises(KelaMessageError) as raised:
        notification_feedback(inputs["task"], inputs["serviceRequest"])
    assert raised.value.code is ErrorCode.BAD_INPUT
    assert "notification id" in raised.value.message


def test_wrong_input_type_is_refused() -> None:
    inputs = in_progress()
    with pytest.raises(KelaMessageError) as raised:
        build_outbound(
            "NotificationFeedback",
            {"task": inputs["serviceRequest"], "serviceRequest": inputs["task"]},
        )
    assert raised.value.code is ErrorCode.BAD_INPUT


def test_unknown_outbound_service() -> None:
    with pytest.raises(KelaMessageError) as raised:
        build_outbound("Nonsense", {})
    assert raised.value.code is ErrorCode.UNKNOWN_SERVICE


def test_decision_message() -> None:
    inputs = decision()
    element = municipal_assistance_decision(
        inputs["task"], inputs["serviceRequest"], inputs["wellbeingArea"]
    )
    schema("municipal-assistance-decision-v1.xsd").validate(serialize(element).decode("utf-8"))
    assert text_of(element, "DecisionKind") == "supplementary"
    assert text_of(element, "Outcome") == "partly-granted"


def test_decision_needs_a_completed_task() -> None:
    inputs = decision()
    inputs["task"]["status"] = "in-progress"
    with pytest.raises(KelaMessageError) as raised:
        municipal_assistance_decision(
            inputs["task"], inputs["serviceRequest"], inputs["wellbeingArea"]
        )
    assert "Task.status" in raised.value.message


def test_decision_without_outcome_fails_xsd_validation() -> None:
    inputs = decision()
    inputs["task"]["output"] = [
        o for o in inputs["task"]["output"] if o["type"]["coding"][0]["code"] != "outcome"
    ]
    with pytest.raises(KelaMessageError) as raised:
        municipal_assistance_decision(
            inputs["task"], inputs["serviceRequest"], inputs["wellbeingArea"]
        )
    assert raised.value.code is ErrorCode.OUTBOUND_INVALID
    assert "Outcome" in raised.value.message


def test_decision_amounts_have_two_decimals() -> None:
    inputs = decision()
    for output in inputs["task"]["output"]:
        if output["type"]["coding"][0]["code"] == "total-amount":
            output["valueMoney"]["value"] = 1200
    element = municipal_assistance_decision(
        inputs["task"], inputs["serviceRequest"], inputs["wellbeingArea"]
    )
    assert b"<TotalAmount>1200.00</TotalAmount>" in serialize(element)


def test_decision_for_another_owner_is_refused() -> None:
    inputs = decision()
    inputs["wellbeingArea"]["id"] = "pirha"
    with pytest.raises(KelaMessageError) as raised:
        municipal_assistance_decision(
            inputs["task"], inputs["serviceRequest"], inputs["wellbeingArea"]
        )
    assert "Task.owner" in raised.value.message
