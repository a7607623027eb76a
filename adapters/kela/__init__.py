"""The Kela adapter: Kela's X-Road message bodies ↔ FHIR R4 (no HTTP, no storage).

Inbound (Kela → gateway): :func:`map_inbound` validates a body element against its
XSD (``schemas/kela/``) and maps it with ``mappings/kela/<message>.inbound.json`` into
a transaction Bundle; :func:`response_for` builds the SOAP response body.
Outbound (gateway → Kela): :func:`notification_feedback` and
:func:`municipal_assistance_decision` build message bodies from FHIR resources;
:func:`read_acknowledgement` reads Kela's answer. Every refusal is a
:class:`KelaMessageError`.
"""

from adapters.kela.codes import CodeTable, code_system, code_table, code_tables
from adapters.kela.directory import Directory
from adapters.kela.errors import ErrorCode, KelaMessageError, MappingError
from adapters.kela.functions import stable_message_id
from adapters.kela.inbound import InboundResult, inbound_namespace, inbound_services, map_inbound
from adapters.kela.outbound import (
    build_outbound,
    municipal_assistance_decision,
    notification_feedback,
    outbound_namespace,
    outbound_services,
)
from adapters.kela.responses import (
    Acknowledgement,
    InHand,
    NamedContact,
    application_forwarding_response,
    benefit_decision_response,
    concern_notification_response,
    read_acknowledgement,
    response_for,
)
from adapters.kela.wire import parse_message, serialize

__all__ = [
    "Acknowledgement",
    "CodeTable",
    "Directory",
    "ErrorCode",
    "InHand",
    "InboundResult",
    "KelaMessageError",
    "MappingError",
    "NamedContact",
    "application_forwarding_response",
    "benefit_decision_response",
    "build_outbound",
    "code_system",
    "code_table",
    "code_tables",
    "concern_notification_response",
    "inbound_namespace",
    "inbound_services",
    "map_inbound",
    "municipal_assistance_decision",
    "notification_feedback",
    "outbound_namespace",
    "outbound_services",
    "parse_message",
    "read_acknowledgement",
    "response_for",
    "serialize",
    "stable_message_id",
]
