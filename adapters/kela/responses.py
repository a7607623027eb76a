"""Response bodies of the inbound services, and Kela's acknowledgements of the
outbound ones (X-Road message protocol 4.0 §2.3: the response body element is the
service code followed by ``Response``, in the request's namespace).

Every body built here is validated against its XSD before it is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from adapters.kela.errors import ErrorCode, KelaMessageError
from adapters.kela.inbound import InboundResult, inbound_namespace
from adapters.kela.mapping import mappings
from adapters.kela.outbound import outbound_namespace
from adapters.kela.wire import (
    build_element,
    first_schema_error,
    local_name,
    message_schema,
    namespace_of,
)


@dataclass(frozen=True, slots=True)
class NamedContact:
    """A named worker Kela may contact (name and phone and/or email)."""

    name: str
    phone: str | None = None
    email: str | None = None

    def content(self) -> dict[str, Any]:
        return {"Name": self.name, "Phone": self.phone, "Email": self.email}


@dataclass(frozen=True, slots=True)
class InHand:
    """The client is already being handled at the wellbeing area: since when, and by
    whom when the data-sharing agreement lets Kela know."""

    since: date
    contact: NamedContact | None = None


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    message_id: str
    duplicate: bool


def _response(service_code: str, content: dict[str, Any]) -> Any:
    """``<service_code>Response`` to an inbound message, checked against its XSD."""
    element = build_element(inbound_namespace(service_code), f"{service_code}Response", content)
    mapping = mappings("inbound")[service_code]
    problem = first_schema_error(message_schema(mapping.schema_file), element)
    if problem is not None:
        raise KelaMessageError(
            ErrorCode.OUTBOUND_INVALID,
            f"{service_code}Response is not valid against {mapping.schema_file}: {problem}",
        )
    return element


def concern_notification_response(
    *, notification_id: str, service_request_id: str, in_hand: InHand | None = None
) -> Any:
    """``ConcernNotificationResponse``: accepted, or already in hand (the new
    ServiceRequest was linked to the open one; no parallel process was started)."""
    content: dict[str, Any] = {
        "NotificationId": notification_id,
        "ReceiptStatus": "already-in-hand" if in_hand is not None else "accepted",
        "ServiceRequestId": service_request_id,
    }
    if in_hand is not None:
        content["InHand"] = {
            "Since": in_hand.since.isoformat(),
            "Contact": in_hand.contact.content() if in_hand.contact is not None else None,
        }
    return _response("ConcernNotification", content)


def application_forwarding_response(*, application_id: str, service_request_id: str) -> Any:
    content = {
        "ApplicationId": application_id,
        "ReceiptStatus": "accepted",
        "ServiceRequestId": service_request_id,
    }
    return _response("ApplicationForwarding", content)


def benefit_decision_response(*, decision_id: str, document_reference_id: str) -> Any:
    content = {
        "DecisionId": decision_id,
        "ReceiptStatus": "accepted",
        "DocumentReferenceId": document_reference_id,
    }
    return _response("BenefitDecision", content)


def response_for(result: InboundResult, *, in_hand: InHand | None = None) -> Any:
    """The response body for a mapped inbound message."""
    if result.service_code == "ConcernNotification":
        return concern_notification_response(
            notification_id=result.source_id,
            service_request_id=result.focus_id,
            in_hand=in_hand,
        )
    if in_hand is not None:
        raise ValueError(f"{result.service_code} has no 'already in hand' response")
    if result.service_code == "ApplicationForwarding":
        return application_forwarding_response(
            application_id=result.source_id, service_request_id=result.focus_id
        )
    return benefit_decision_response(
        decision_id=result.source_id, document_reference_id=result.focus_id
    )


def read_acknowledgement(service_code: str, body: Any) -> Acknowledgement:
    """Kela's ``<service>Response`` to an outbound message, checked against the XSD."""
    namespace = outbound_namespace(service_code)
    expected = f"{service_code}Response"
    if local_name(body) != expected or namespace_of(body) != namespace:
        raise KelaMessageError(
            ErrorCode.WRONG_ELEMENT,
            f"The response to {service_code} must be {{{namespace}}}{expected}, "
            f"not {{{namespace_of(body)}}}{local_name(body)}",
        )
    mapping = mappings("outbound")[service_code]
    problem = first_schema_error(message_schema(mapping.schema_file), body)
    if problem is not None:
        raise KelaMessageError(
            ErrorCode.SCHEMA_INVALID,
            f"{expected} is not valid against {mapping.schema_file}: {problem}",
        )
    values = {local_name(child): (child.text or "").strip() for child in body}
    return Acknowledgement(values["MessageId"], values["ReceiptStatus"] == "duplicate")
