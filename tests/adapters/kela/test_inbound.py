"""Inbound Kela messages: refusals, determinism, FHIR validity and Bundle conventions."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree

from adapters.kela import (
    ErrorCode,
    InboundResult,
    KelaMessageError,
    inbound_namespace,
    inbound_services,
    map_inbound,
    parse_message,
)
from gateway.fhir.validation import validate_resource
from tests.adapters.kela.support import (
    GOLDEN_DIR,
    SENDER,
    TableDirectory,
    golden_cases,
    golden_directory,
    read_body,
)

CN = "urn:silta:kela:concern-notification:1"
HETU_SYSTEM = "urn:oid:1.2.246.21"


def notification(name: str = "with-consent") -> Any:
    return read_body(GOLDEN_DIR / "concern-notification" / f"{name}.input.xml")


def child(element: Any, path: str) -> Any:
    found = element.find(path, namespaces={"cn": CN})
    assert found is not None, path
    return found


def refused(body: Any, service_code: str = "ConcernNotification") -> KelaMessageError:
    with pytest.raises(KelaMessageError) as raised:
        map_inbound(service_code, body, golden_directory(), sender=SENDER)
    return raised.value


def mapped(body: Any, service_code: str = "ConcernNotification") -> InboundResult:
    return map_inbound(service_code, body, golden_directory(), sender=SENDER)


def all_inbound_results() -> Iterator[InboundResult]:
    for case in golden_cases("xml", "json"):
        yield mapped(read_body(case.input_path), case.service_code)


# -- refusals ---------------------------------------------------------------------


def test_unknown_service_is_refused() -> None:
    error = refused(notification(), "HousingAllowance")
    assert error.code is ErrorCode.UNKNOWN_SERVICE
    assert "HousingAllowance" in error.message
    assert "ConcernNotification" in error.message


def test_wrong_namespace_is_refused() -> None:
    body = etree.fromstring(
        etree.tostring(notification()).replace(CN.encode(), b"urn:example:other")
    )
    error = refused(body)
    assert error.code is ErrorCode.WRONG_ELEMENT
    assert "{urn:silta:kela:concern-notification:1}ConcernNotification" in error.message
    assert "urn:example:other" in error.message


def test_unsupported_version_is_named() -> None:
    body = etree.fromstring(
        etree.tostring(notification()).replace(CN.encode(), CN[:-1].encode() + b"2")
    )
    error = refused(body)
    assert error.code is ErrorCode.WRONG_ELEMENT
    assert "version 2 of the message is not supported" in error.message


def test_body_of_another_service_is_refused() -> None:
    body = read_body(GOLDEN_DIR / "benefit-decision" / "basic-social-assistance.input.xml")
    error = refused(body, "ConcernNotification")
    assert error.code is ErrorCode.WRONG_ELEMENT
    assert "BenefitDecision" in error.message


def test_xsd_invalid_names_the_element() -> None:
    body = notification()
    child(body, "cn:Urgency").text = "whenever"
    error = refused(body)
    assert error.code is ErrorCode.SCHEMA_INVALID
    assert "ConcernNotification/Urgency" in error.message
    assert "concern-notification-v1.xsd" in error.message


def test_missing_required_element_is_xsd_invalid() -> None:
    body = notification()
    body.remove(child(body, "cn:NoteToClient"))
    error = refused(body)
    assert error.code is ErrorCode.SCHEMA_INVALID
    assert "NoteToClient" in error.message


def test_reason_code_of_another_field_is_xsd_invalid() -> None:
    body = notification()
    child(body, "cn:Reasons/cn:Income/cn:Code").text = "rent-arrears"
    error = refused(body)
    assert error.code is ErrorCode.SCHEMA_INVALID
    assert "Reasons/Income/Code" in error.message


def test_invalid_hetu_check_character_is_refused() -> None:
    body = notification()
    hetu = child(body, "cn:Client/cn:Hetu")
    hetu.text = hetu.text[:-1] + ("A" if hetu.text[-1] != "A" else "B")
    error = refused(body)
    assert error.code is ErrorCode.INVALID_HETU
    assert "check character" in error.message
    assert "Client/Hetu" in error.message


def test_hetu_with_impossible_date_is_refused() -> None:
    body = notification()
    child(body, "cn:Client/cn:Hetu").text = "310288-922J"
    error = refused(body)
    assert error.code is ErrorCode.INVALID_HETU
    assert "birth date" in error.message


def test_unknown_municipality_is_refused() -> None:
    body = notification()
    child(body, "cn:Client/cn:MunicipalityCode").text = "999"
    error = refused(body)
    assert error.code is ErrorCode.UNKNOWN_MUNICIPALITY
    assert "999" in error.message


def test_municipality_without_wellbeing_area_is_refused() -> None:
    body = notification()
    child(body, "cn:Client/cn:MunicipalityCode").text = "478"  # Maarianhamina, Åland
    error = refused(body)
    assert error.code is ErrorCode.NO_WELLBEING_AREA
    assert "478 Maarianhamina" in error.message


def test_description_without_consent_is_refused_not_dropped() -> None:
    body = notification()
    child(body, "cn:ConsentGiven").text = "false"
    error = refused(body)
    assert error.code is ErrorCode.DESCRIPTION_WITHOUT_CONSENT
    assert "SituationDescription" in error.message
    assert "ConsentGiven" in error.message


def test_doctype_is_refused() -> None:
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
        b'<ConcernNotification xmlns="urn:silta:kela:concern-notification:1">&e;'
        b"</ConcernNotification>"
    )
    with pytest.raises(KelaMessageError) as raised:
        parse_message(data)
    assert raised.value.code is ErrorCode.DTD_REFUSED


def test_not_xml_is_refused() -> None:
    with pytest.raises(KelaMessageError) as raised:
        parse_message(b"<ConcernNotification><unclosed></ConcernNotification>")
    assert raised.value.code is ErrorCode.NOT_XML


def test_error_message_never_contains_the_hetu() -> None:
    body = notification()
    hetu = child(body, "cn:Client/cn:Hetu")
    hetu.text = hetu.text[:-1] + "A"
    assert hetu.text not in refused(body).message


# -- the body inside a SOAP envelope ----------------------------------------------


def test_body_element_inside_an_envelope_maps_the_same() -> None:
    envelope = etree.fromstring(
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<soapenv:Header/><soapenv:Body/></soapenv:Envelope>"
    )
    envelope[1].append(notification())
    assert mapped(envelope[1][0]).bundle == mapped(notification()).bundle


# -- determinism --------------------------------------------------------------------


def test_redelivery_gives_the_identical_bundle() -> None:
    for case in golden_cases("xml", "json"):
        first = mapped(read_body(case.input_path), case.service_code)
        again = mapped(read_body(case.input_path), case.service_code)
        assert first == again


def test_ids_follow_the_kela_identifier_only() -> None:
    body = notification()
    first = mapped(body)
    changed = notification()
    child(changed, "cn:Urgency").text = "immediate"
    child(changed, "cn:SentAt").text = "2025-01-15T08:00:00+02:00"
    second = mapped(changed)
    assert first.focus == second.focus and first.task == second.task
    assert [e["fullUrl"] for e in first.bundle["entry"]] == [
        e["fullUrl"] for e in second.bundle["entry"]
    ]
    other = notification()
    child(other, "cn:NotificationId").text = "KELA-SHL35-2025-999999"
    third = mapped(other)
    assert third.focus != first.focus
    assert not {e["fullUrl"] for e in first.bundle["entry"]} & {
        e["fullUrl"] for e in third.bundle["entry"]
    }


# -- FHIR validity and Bundle conventions --------------------------------------------


def test_every_resource_and_bundle_validates() -> None:
    for result in all_inbound_results():
        assert validate_resource(result.bundle) == [], result.source_id
        for entry in result.bundle["entry"]:
            resource = entry["resource"]
            issues = validate_resource(resource, allow_urn_uuid=True)
            assert issues == [], (resource["resourceType"], issues)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_bundle_conventions() -> None:
    for result in all_inbound_results():
        entries = result.bundle["entry"]
        full_urls = [e["fullUrl"] for e in entries]
        assert len(set(full_urls)) == len(full_urls)
        assert all(url.startswith("urn:uuid:") for url in full_urls)
        patient = entries[0]
        assert patient["request"] == {
            "method": "POST",
            "url": "Patient",
            "ifNoneExist": f"identifier={HETU_SYSTEM}|{result.hetu}",
        }
        for entry in entries[1:]:
            resource = entry["resource"]
            assert entry["request"] == {
                "method": "PUT",
                "url": f"{resource['resourceType']}/{resource['id']}",
            }
        for reference in _references(result.bundle):
            if reference.startswith("urn:uuid:"):
                assert reference in full_urls
            elif not reference.startswith("#"):
                assert reference.startswith("Organization/"), reference
        keys = {f"{e['resource']['resourceType']}/{e['resource'].get('id')}" for e in entries}
        assert result.focus in keys
        assert result.task is None or result.task in keys


def test_patient_is_derived_from_the_hetu() -> None:
    patient = mapped(notification("without-consent-swedish-note")).bundle["entry"][0]["resource"]
    assert patient["birthDate"] == "2002-11-04"
    assert patient["gender"] == "female"
    assert patient["identifier"][0]["system"] == HETU_SYSTEM


def test_interpreter_need_follows_the_message() -> None:
    body = notification()
    child(body, "cn:Client/cn:InterpreterNeeded").text = "true"
    patient = mapped(body).bundle["entry"][0]["resource"]
    assert {
        "url": "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired",
        "valueBoolean": True,
    } in patient["extension"]
    without = mapped(notification("without-consent-swedish-note")).bundle["entry"][0]["resource"]
    assert [e["url"] for e in without["extension"]] == [
        "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/municipality-code"
    ]


def _resources(result: InboundResult, resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in result.bundle["entry"]
        if e["resource"]["resourceType"] == resource_type
    ]


def test_consent_only_with_the_clients_consent() -> None:
    with_consent = mapped(notification())
    assert with_consent.consent_given is True
    [consent] = _resources(with_consent, "Consent")
    assert consent["provision"]["actor"][0]["reference"]["reference"] == "Organization/pirha"
    [service_request] = _resources(with_consent, "ServiceRequest")
    assert "note" in service_request

    without = mapped(notification("without-consent-swedish-note"))
    assert without.consent_given is False
    assert _resources(without, "Consent") == []
    [service_request] = _resources(without, "ServiceRequest")
    assert "note" not in service_request


def test_no_description_and_no_consent_is_accepted() -> None:
    body = notification()
    body.remove(child(body, "cn:SituationDescription"))
    child(body, "cn:ConsentGiven").text = "0"
    result = mapped(body)
    assert _resources(result, "Consent") == []


@pytest.mark.parametrize(
    ("urgency", "priority"),
    [("non-urgent", "routine"), ("urgent", "urgent"), ("immediate", "asap")],
)
def test_urgency_becomes_priority(urgency: str, priority: str) -> None:
    body = notification()
    child(body, "cn:Urgency").text = urgency
    result = mapped(body)
    [service_request] = _resources(result, "ServiceRequest")
    [task] = _resources(result, "Task")
    assert service_request["priority"] == task["priority"] == priority


def test_task_follows_the_gravity_referral_pattern() -> None:
    result = mapped(notification())
    [task] = _resources(result, "Task")
    [service_request] = _resources(result, "ServiceRequest")
    entries = {e["resource"]["resourceType"]: e["fullUrl"] for e in result.bundle["entry"]}
    assert task["status"] == "requested" and task["intent"] == "order"
    assert task["focus"] == {"reference": entries["ServiceRequest"]}
    assert task["for"] == {"reference": entries["Patient"]}
    assert task["owner"]["reference"] == "Organization/pirha"
    assert task["requester"] == {"reference": "Organization/kela"}
    assert {"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}.items() <= (
        task["code"]["coding"][0].items()
    )
    assert service_request["performer"][0]["reference"] == "Organization/pirha"


def test_facts_for_the_endpoint() -> None:
    result = mapped(notification("without-consent-swedish-note"))
    assert result.service_code == "ConcernNotification"
    assert result.source_id == "KELA-SHL35-2025-001207"
    assert result.sent_at == "2025-03-05T13:45:10+02:00"
    assert result.hetu == "041102A9343"
    assert result.municipality_code == "710"
    assert result.wellbeing_area == "luvn"
    assert result.focus == f"ServiceRequest/{result.focus_id}"
    assert result.focus_id.startswith("kela-cn-")


def test_services_and_namespaces() -> None:
    assert set(inbound_services()) == {
        "ConcernNotification",
        "ApplicationForwarding",
        "BenefitDecision",
    }
    assert inbound_namespace("ConcernNotification") == CN


def test_directory_is_asked_for_the_clients_municipality() -> None:
    asked: list[str] = []

    class Recording(TableDirectory):
        def wellbeing_area_for_municipality(self, municipality_code: str) -> str | None:
            asked.append(municipality_code)
            return "tampere-test"

    result = map_inbound("ConcernNotification", notification(), Recording({}), sender="kela-x")
    assert asked == ["837"]
    assert result.wellbeing_area == "tampere-test"
    [task] = _resources(result, "Task")
    assert task["requester"] == {"reference": "Organization/kela-x"}


def test_mapping_does_not_change_the_body() -> None:
    body = notification()
    before = etree.tostring(body)
    mapped(copy.deepcopy(body))
    mapped(body)
    assert etree.tostring(body) == before


# -- application forwarding and benefit decision -------------------------------------


def test_attachments_become_document_references_without_content() -> None:
    body = read_body(
        GOLDEN_DIR / "application-forwarding" / "supplementary-with-attachments.input.xml"
    )
    result = mapped(body, "ApplicationForwarding")
    documents = _resources(result, "DocumentReference")
    [service_request] = _resources(result, "ServiceRequest")
    assert [d["identifier"][0]["value"] for d in documents] == ["LIITE-1", "LIITE-2"]
    full_urls = {e["resource"].get("id"): e["fullUrl"] for e in result.bundle["entry"]}
    for document in documents:
        attachment = document["content"][0]["attachment"]
        assert "data" not in attachment and "url" not in attachment
        assert set(attachment) == {"contentType", "size", "hash", "title", "creation"}
        assert document["context"]["related"] == [{"reference": full_urls[service_request["id"]]}]
    linked = [i["reference"] for i in service_request["supportingInfo"] if "reference" in i]
    assert linked == [full_urls[d["id"]] for d in documents]
    assert service_request["category"][0]["coding"][0]["code"] == (
        "supplementary-social-assistance-application"
    )


def test_application_without_attachments_or_decision() -> None:
    body = read_body(
        GOLDEN_DIR / "application-forwarding" / "supplementary-with-attachments.input.xml"
    )
    namespace = {"af": "urn:silta:kela:application-forwarding:1"}
    body.remove(body.find("af:Attachments", namespaces=namespace))
    body.remove(body.find("af:KelaDecisionId", namespaces=namespace))
    body.find("af:Kind", namespaces=namespace).text = "preventive"
    result = mapped(body, "ApplicationForwarding")
    assert [e["resource"]["resourceType"] for e in result.bundle["entry"]] == [
        "Patient",
        "ServiceRequest",
        "Task",
    ]
    [service_request] = _resources(result, "ServiceRequest")
    assert "supportingInfo" not in service_request
    assert service_request["code"]["coding"][0]["code"] == "preventive"


def test_benefit_decision_is_searchable_by_r4_parameters() -> None:
    body = read_body(GOLDEN_DIR / "benefit-decision" / "basic-social-assistance.input.xml")
    result = mapped(body, "BenefitDecision")
    [document] = _resources(result, "DocumentReference")
    assert result.focus == f"DocumentReference/{document['id']}"
    assert result.task is None
    # DocumentReference search parameters of R4: patient/subject, type, category, period, date
    assert document["subject"]["reference"] == result.bundle["entry"][0]["fullUrl"]
    assert document["type"]["coding"][0]["code"] == "basic-social-assistance"
    assert document["category"][0]["coding"][0]["code"] == "benefit-decision"
    assert document["context"]["period"] == {"start": "2025-01-01", "end": "2025-01-31"}
    assert document["date"] == "2025-01-03T00:00:00+02:00"
    facts = {e["url"]: e for e in document["extension"][0]["extension"]}
    assert facts["monthlyAmount"]["valueMoney"] == {"value": 412.35, "currency": "EUR"}
    assert "totalAmount" not in facts


def test_decision_date_in_summer_time() -> None:
    body = read_body(GOLDEN_DIR / "benefit-decision" / "basic-social-assistance.input.xml")
    body.find(
        "bd:DecisionDate", namespaces={"bd": "urn:silta:kela:benefit-decision:1"}
    ).text = "2025-07-01"
    [document] = _resources(mapped(body, "BenefitDecision"), "DocumentReference")
    assert document["date"] == "2025-07-01T00:00:00+03:00"
