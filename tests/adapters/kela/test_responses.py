"""Response bodies of the inbound services and Kela's acknowledgements."""

from __future__ import annotations

from datetime import date

import pytest
from lxml import etree

from adapters.kela import (
    ErrorCode,
    InHand,
    KelaMessageError,
    NamedContact,
    concern_notification_response,
    map_inbound,
    parse_message,
    read_acknowledgement,
    response_for,
    serialize,
)
from tests.adapters.kela.support import SENDER, canonical, golden_cases, golden_directory, read_body


def test_every_inbound_message_has_a_valid_response() -> None:
    for case in golden_cases("xml", "json"):
        result = map_inbound(
            case.service_code, read_body(case.input_path), golden_directory(), sender=SENDER
        )
        element = response_for(result)
        assert etree.QName(element).localname == f"{case.service_code}Response"
        assert etree.QName(element).namespace == etree.QName(read_body(case.input_path)).namespace
        assert result.focus_id.encode() in serialize(element)


def test_accepted_notification_response() -> None:
    element = concern_notification_response(
        notification_id="KELA-SHL35-2025-000418", service_request_id="kela-cn-e3d0d25efdebb270"
    )
    assert canonical(element) == canonical(
        b'<ConcernNotificationResponse xmlns="urn:silta:kela:concern-notification:1">'
        b"<NotificationId>KELA-SHL35-2025-000418</NotificationId>"
        b"<ReceiptStatus>accepted</ReceiptStatus>"
        b"<ServiceRequestId>kela-cn-e3d0d25efdebb270</ServiceRequestId>"
        b"</ConcernNotificationResponse>"
    )


def test_already_in_hand_response_with_contact() -> None:
    element = concern_notification_response(
        notification_id="KELA-SHL35-2025-000418",
        service_request_id="kela-cn-e3d0d25efdebb270",
        in_hand=InHand(
            date(2024, 11, 4), NamedContact("Mikko Heikkinen", phone="+358 40 806 5000")
        ),
    )
    assert canonical(element) == canonical(
        b'<ConcernNotificationResponse xmlns="urn:silta:kela:concern-notification:1">'
        b"<NotificationId>KELA-SHL35-2025-000418</NotificationId>"
        b"<ReceiptStatus>already-in-hand</ReceiptStatus>"
        b"<ServiceRequestId>kela-cn-e3d0d25efdebb270</ServiceRequestId>"
        b"<InHand><Since>2024-11-04</Since>"
        b"<Contact><Name>Mikko Heikkinen</Name><Phone>+358 40 806 5000</Phone></Contact>"
        b"</InHand></ConcernNotificationResponse>"
    )


def test_contact_without_phone_or_email_is_not_sent() -> None:
    with pytest.raises(KelaMessageError) as raised:
        concern_notification_response(
            notification_id="N-1",
            service_request_id="kela-cn-1",
            in_hand=InHand(date(2024, 11, 4), NamedContact("Mikko Heikkinen")),
        )
    assert raised.value.code is ErrorCode.OUTBOUND_INVALID


def test_acknowledgement() -> None:
    body = parse_message(
        b'<NotificationFeedbackResponse xmlns="urn:silta:kela:notification-feedback:1">'
        b"<MessageId>052ef843-fb44-5aba-9c51-cab8491e9310</MessageId>"
        b"<ReceiptStatus>duplicate</ReceiptStatus></NotificationFeedbackResponse>"
    )
    acknowledgement = read_acknowledgement("NotificationFeedback", body)
    assert acknowledgement.message_id == "052ef843-fb44-5aba-9c51-cab8491e9310"
    assert acknowledgement.duplicate


def test_acknowledgement_of_another_message_is_refused() -> None:
    body = parse_message(
        b'<NotificationFeedbackResponse xmlns="urn:silta:kela:notification-feedback:1">'
        b"<MessageId>x</MessageId><ReceiptStatus>ok</ReceiptStatus></NotificationFeedbackResponse>"
    )
    with pytest.raises(KelaMessageError) as raised:
        read_acknowledgement("MunicipalAssistanceDecision", body)
    assert raised.value.code is ErrorCode.WRONG_ELEMENT
    with pytest.raises(KelaMessageError) as raised:
        read_acknowledgement("NotificationFeedback", body)
    assert raised.value.code is ErrorCode.SCHEMA_INVALID
    assert "ReceiptStatus" in raised.value.message
