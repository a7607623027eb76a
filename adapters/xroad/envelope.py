"""SOAP 1.1 envelopes of the X-Road message protocol v4.0 (PR-MESS).

- :func:`parse_request`: an inbound request into typed headers (§2.2), the header
  elements in their original order (unknown headers included) and the one body
  element (§2.3);
- :func:`build_response`: the response, echoing every request header in the same
  order with the same values (§2.2) around a ``<serviceCode>Response`` body (§2.3);
- :func:`build_fault`: a SOAP 1.1 Fault (SOAP 1.1 §4.4, X-Road §2.5);
- :func:`build_request`: an outbound request from the gateway's own client identifier;
- :func:`parse_fault`: the Fault in a received envelope, if there is one.

XML is parsed with the project's hardened parser: no DTD, no entity expansion, no
network access; documents with a DOCTYPE or entity declarations are refused.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from lxml import etree

from adapters.xroad.identifiers import (
    MEMBER,
    SERVICE,
    SUBSYSTEM,
    ClientId,
    InvalidIdentifier,
    ServiceId,
)
from gateway.fhir.formats import hardened_parser

SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD_NS: Final = "http://x-road.eu/xsd/xroad.xsd"
IDENTIFIERS_NS: Final = "http://x-road.eu/xsd/identifiers"
PROTOCOL_VERSION: Final = "4.0"
NSMAP: Final = {"SOAP-ENV": SOAP_ENV_NS, "xrd": XROAD_NS, "id": IDENTIFIERS_NS}
CONTENT_TYPE: Final = "text/xml; charset=utf-8"

_ENVELOPE: Final = f"{{{SOAP_ENV_NS}}}Envelope"
_HEADER: Final = f"{{{SOAP_ENV_NS}}}Header"
_BODY: Final = f"{{{SOAP_ENV_NS}}}Body"
_FAULT: Final = f"{{{SOAP_ENV_NS}}}Fault"
_MUST_UNDERSTAND: Final = f"{{{SOAP_ENV_NS}}}mustUnderstand"
_OBJECT_TYPE: Final = f"{{{IDENTIFIERS_NS}}}objectType"
_X: Final = f"{{{XROAD_NS}}}"
_I: Final = f"{{{IDENTIFIERS_NS}}}"

# The header fields of Table 1 (§2.2) that a request is read for; any other header,
# X-Road's own (requestHash, centralService, extensions) or not, is kept and echoed.
_READ_HEADERS: Final = ("client", "service", "id", "userId", "issue", "protocolVersion")
_CLIENT_FIELDS: Final = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode")
_SERVICE_FIELDS: Final = (*_CLIENT_FIELDS, "serviceCode", "serviceVersion")


class FaultCode(enum.StrEnum):
    """The SOAP 1.1 fault codes (SOAP 1.1 §4.4.1)."""

    VERSION_MISMATCH = "VersionMismatch"
    MUST_UNDERSTAND = "MustUnderstand"
    CLIENT = "Client"
    SERVER = "Server"


class XRoadFault(Exception):
    """A message that cannot be processed, answered as a SOAP Fault (SOAP 1.1 §4.4):
    ``code`` tells whose fault it is, ``message`` becomes the faultstring."""

    def __init__(
        self, message: str, *, code: FaultCode = FaultCode.CLIENT, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail

    def envelope(self, request: XRoadRequest | None = None) -> bytes:
        """This fault as a SOAP Fault envelope."""
        return build_fault(self.code, self.message, detail=self.detail, request=request)


@dataclass(frozen=True, slots=True)
class XRoadHeaders:
    """The X-Road header fields of a request (§2.2, Table 1)."""

    client: ClientId
    service: ServiceId
    message_id: str
    protocol_version: str
    user_id: str | None = None
    issue: str | None = None


@dataclass(frozen=True, slots=True)
class XRoadRequest:
    """A parsed request: its headers, every header element in document order (for the
    echo of §2.2) and the wrapper element of the body (§2.3)."""

    headers: XRoadHeaders
    header_elements: tuple[Any, ...]
    body: Any

    @property
    def service_code(self) -> str:
        return self.headers.service.service_code

    @property
    def message_id(self) -> str:
        return self.headers.message_id

    @property
    def client(self) -> ClientId:
        return self.headers.client


@dataclass(frozen=True, slots=True)
class SoapFault:
    """A Fault received from a counterpart (SOAP 1.1 §4.4)."""

    code: str
    string: str
    detail: str | None = None


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def parse_request(message: bytes) -> XRoadRequest:
    """Reads an X-Road request envelope; anything short of the protocol is an
    :class:`XRoadFault` naming the problem."""
    header, body_elements = _parse_envelope(message)
    if header is None:
        raise XRoadFault("The SOAP Envelope has no Header: X-Road messages carry their headers")
    elements, found = _header_elements(header)
    for name in ("client", "service", "id", "protocolVersion"):
        if name not in found:
            raise XRoadFault(f"The X-Road header {name} is missing")
    version = _text(found["protocolVersion"], "protocolVersion")
    if version != PROTOCOL_VERSION:
        raise XRoadFault(
            f"The X-Road header protocolVersion must be {PROTOCOL_VERSION}, not '{version}'"
        )
    message_id = _text(found["id"], "id")
    if not message_id:
        raise XRoadFault("The X-Road header id is empty")
    service = _service_id(found["service"])
    headers = XRoadHeaders(
        client=_client_id(found["client"]),
        service=service,
        message_id=message_id,
        protocol_version=version,
        user_id=_optional_text(found.get("userId"), "userId"),
        issue=_optional_text(found.get("issue"), "issue"),
    )
    if not body_elements:
        raise XRoadFault("The SOAP Body is empty: it must hold the request element")
    if len(body_elements) > 1:
        names = ", ".join(etree.QName(e).localname for e in body_elements)
        raise XRoadFault(f"The SOAP Body must hold exactly one element, not {names}")
    body = body_elements[0]
    name = etree.QName(body).localname
    if name != service.service_code:
        raise XRoadFault(
            f"The body element {name} does not match the serviceCode {service.service_code}"
        )
    return XRoadRequest(headers=headers, header_elements=tuple(elements), body=body)


def parse_fault(message: bytes) -> SoapFault | None:
    """The Fault of a SOAP 1.1 envelope (SOAP 1.1 §4.4), or None when its body holds
    something else; a message that is no SOAP 1.1 envelope is an :class:`XRoadFault`."""
    _, body_elements = _parse_envelope(message)
    fault = next((e for e in body_elements if e.tag == _FAULT), None)
    if fault is None:
        return None
    code = (fault.findtext("faultcode") or "").strip()
    string = (fault.findtext("faultstring") or "").strip()
    detail = fault.find("detail")
    detail_text = " ".join(detail.itertext()).strip() if detail is not None else None
    return SoapFault(code=code, string=string, detail=detail_text or None)


def parse_xml(message: bytes) -> Any:
    """The root element of ``message``, parsed hardened; DTDs and entities refused."""
    if b"<!DOCTYPE" in message or b"<!ENTITY" in message:
        raise XRoadFault("DTDs and entity declarations are not allowed in X-Road messages")
    try:
        root = etree.fromstring(message, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise XRoadFault(f"The message is not well-formed XML: {exc.msg}") from None
    if root is None:
        raise XRoadFault("The message is not well-formed XML: no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XRoadFault("DTDs and entity declarations are not allowed in X-Road messages")
    return root


def _parse_envelope(message: bytes) -> tuple[Any | None, list[Any]]:
    """The Header (or None) and the element children of the Body (SOAP 1.1 §4: an
    optional Header first, then exactly one Body; another Envelope namespace is a
    VersionMismatch, §4.1.2)."""
    root = parse_xml(message)
    qname = etree.QName(root)
    if qname.localname != "Envelope":
        raise XRoadFault(f"The message is not a SOAP 1.1 Envelope but {qname.localname}")
    if root.tag != _ENVELOPE:
        raise XRoadFault(
            f"The Envelope must be in the SOAP 1.1 namespace {SOAP_ENV_NS}, "
            f"not {qname.namespace or 'no namespace'}",
            code=FaultCode.VERSION_MISMATCH,
        )
    children = _elements(root)
    header = children.pop(0) if children and children[0].tag == _HEADER else None
    if not children or children[0].tag != _BODY:
        raise XRoadFault("The SOAP Envelope has no Body after its optional Header")
    if any(child.tag in (_HEADER, _BODY) for child in children[1:]):
        raise XRoadFault("The SOAP Envelope must have one Header at most and exactly one Body")
    return header, _elements(children[0])


def _elements(parent: Any) -> list[Any]:
    return [child for child in parent if isinstance(child.tag, str)]


def _header_elements(header: Any) -> tuple[list[Any], dict[str, Any]]:
    """Every header element in order, and the read X-Road ones by name; duplicates of a
    read field and non-X-Road headers that must be understood (SOAP 1.1 §4.2.3) refused."""
    elements = _elements(header)
    found: dict[str, Any] = {}
    for element in elements:
        qname = etree.QName(element)
        if qname.namespace == XROAD_NS and qname.localname in _READ_HEADERS:
            if qname.localname in found:
                raise XRoadFault(f"The X-Road header {qname.localname} appears more than once")
            found[qname.localname] = element
        elif qname.namespace != XROAD_NS and element.get(_MUST_UNDERSTAND, "0").strip() == "1":
            raise XRoadFault(
                f"The header {element.tag} is marked mustUnderstand and is not understood",
                code=FaultCode.MUST_UNDERSTAND,
            )
    return elements, found


def _text(element: Any, name: str) -> str:
    if _elements(element):
        raise XRoadFault(f"The X-Road header {name} must hold text, not elements")
    return str(element.text or "").strip()


def _optional_text(element: Any | None, name: str) -> str | None:
    return None if element is None else _text(element, name) or None


def _identifier_fields(
    element: Any, name: str, object_types: tuple[str, ...], allowed: tuple[str, ...]
) -> tuple[str, dict[str, str]]:
    """The objectType and the fields of an identifier element (§2.1, Annex A)."""
    object_type = element.get(_OBJECT_TYPE) or element.get("objectType")
    if object_type is None:
        raise XRoadFault(f"The X-Road header {name} has no id:objectType attribute")
    if object_type not in object_types:
        raise XRoadFault(
            f"The X-Road header {name} must have objectType {' or '.join(object_types)}, "
            f"not '{object_type}'"
        )
    fields: dict[str, str] = {}
    for child in _elements(element):
        qname = etree.QName(child)
        if qname.namespace != IDENTIFIERS_NS or qname.localname not in allowed:
            raise XRoadFault(f"The X-Road header {name} has an unexpected element {child.tag}")
        if qname.localname in fields:
            raise XRoadFault(f"The X-Road header {name} has {qname.localname} more than once")
        fields[qname.localname] = _text(child, f"{name}/{qname.localname}")
    for required in ("xRoadInstance", "memberClass", "memberCode"):
        if required not in fields:
            raise XRoadFault(f"The X-Road header {name} has no {required}")
    return object_type, fields


def _client_id(element: Any) -> ClientId:
    object_type, fields = _identifier_fields(element, "client", (MEMBER, SUBSYSTEM), _CLIENT_FIELDS)
    subsystem = fields.get("subsystemCode")
    if object_type == SUBSYSTEM and subsystem is None:
        raise XRoadFault("The X-Road header client has objectType SUBSYSTEM but no subsystemCode")
    if object_type == MEMBER and subsystem is not None:
        raise XRoadFault("The X-Road header client has objectType MEMBER but a subsystemCode")
    try:
        return ClientId(
            fields["xRoadInstance"], fields["memberClass"], fields["memberCode"], subsystem
        )
    except InvalidIdentifier as error:
        raise XRoadFault(f"The X-Road header client is not valid: {error}") from None


def _service_id(element: Any) -> ServiceId:
    _, fields = _identifier_fields(element, "service", (SERVICE,), _SERVICE_FIELDS)
    if "serviceCode" not in fields:
        raise XRoadFault("The X-Road header service has no serviceCode")
    try:
        provider = ClientId(
            fields["xRoadInstance"],
            fields["memberClass"],
            fields["memberCode"],
            fields.get("subsystemCode"),
        )
        return ServiceId(provider, fields["serviceCode"], fields.get("serviceVersion"))
    except InvalidIdentifier as error:
        raise XRoadFault(f"The X-Road header service is not valid: {error}") from None


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def response_element(request: XRoadRequest) -> Any:
    """An empty ``<serviceCode>Response`` element in the namespace of the request's body
    element, to be filled and passed to :func:`build_response` (§2.3)."""
    namespace = etree.QName(request.body).namespace
    name = f"{request.service_code}Response"
    if namespace is None:
        return etree.Element(name)
    return etree.Element(f"{{{namespace}}}{name}", nsmap={request.body.prefix: namespace})


def build_response(request: XRoadRequest, body: Any) -> bytes:
    """The response envelope: the request's header elements copied in the same order
    with the same values (§2.2), then ``body`` (an element or serialized XML) as the
    single element of the SOAP Body."""
    return _envelope(request.header_elements, [_element(body)])


def build_fault(
    code: FaultCode | str,
    message: str,
    *,
    detail: str | Any | None = None,
    request: XRoadRequest | None = None,
) -> bytes:
    """A SOAP 1.1 Fault envelope (SOAP 1.1 §4.4): ``faultcode`` qualified in the envelope
    namespace, ``faultstring`` the message, an optional ``detail`` (text, carried as
    X-Road's ``faultDetail``, or an element). With ``request``, its headers are echoed
    as X-Road allows (§2.5)."""
    fault = etree.Element(_FAULT)
    etree.SubElement(fault, "faultcode").text = f"SOAP-ENV:{code}"
    etree.SubElement(fault, "faultstring").text = message
    if detail is not None:
        holder = etree.SubElement(fault, "detail")
        if isinstance(detail, str):
            etree.SubElement(holder, "faultDetail").text = detail
        else:
            holder.append(_element(detail))
    headers = request.header_elements if request is not None else ()
    return _envelope(headers, [fault])


def build_request(
    *,
    client: ClientId,
    service: ServiceId,
    message_id: str,
    body: Any,
    user_id: str | None = None,
    issue: str | None = None,
) -> bytes:
    """An outbound request envelope (§2.2 headers in the order of Annex E.1, §2.3 body):
    ``client`` is the gateway's own member or subsystem, ``service`` the counterpart's;
    the body element should be named after the service code."""
    headers = [_identifier(f"{_X}client", client), _service_identifier(service)]
    for name, value in (
        ("id", message_id),
        ("userId", user_id),
        ("issue", issue),
        ("protocolVersion", PROTOCOL_VERSION),
    ):
        if value is not None:
            element = etree.Element(f"{_X}{name}", nsmap=NSMAP)
            element.text = value
            headers.append(element)
    return _envelope(headers, [_element(body)])


def _identifier(tag: str, client: ClientId) -> Any:
    element = etree.Element(tag, nsmap=NSMAP)
    element.set(_OBJECT_TYPE, client.object_type)
    for name, value in (
        ("xRoadInstance", client.instance),
        ("memberClass", client.member_class),
        ("memberCode", client.member_code),
        ("subsystemCode", client.subsystem_code),
    ):
        if value is not None:
            etree.SubElement(element, f"{_I}{name}").text = value
    return element


def _service_identifier(service: ServiceId) -> Any:
    element = _identifier(f"{_X}service", service.provider)
    element.set(_OBJECT_TYPE, SERVICE)
    etree.SubElement(element, f"{_I}serviceCode").text = service.service_code
    if service.service_version is not None:
        etree.SubElement(element, f"{_I}serviceVersion").text = service.service_version
    return element


def _element(body: Any) -> Any:
    """A detached copy of ``body``: an lxml element, or serialized XML parsed hardened."""
    if isinstance(body, bytes | str):
        text = body.encode("utf-8") if isinstance(body, str) else body
        return parse_xml(text)
    if not isinstance(getattr(body, "tag", None), str):
        raise TypeError(f"Expected an XML element or serialized XML, not {type(body).__name__}")
    element = copy.deepcopy(body)
    element.tail = None
    return element


def _envelope(headers: Iterable[Any], body: Iterable[Any]) -> bytes:
    envelope = etree.Element(_ENVELOPE, nsmap=NSMAP)
    header_elements = list(headers)
    if header_elements:
        header = etree.SubElement(envelope, _HEADER)
        for element in header_elements:
            copied = copy.deepcopy(element)
            copied.tail = None
            header.append(copied)
    body_element = etree.SubElement(envelope, _BODY)
    for element in body:
        body_element.append(element)
    serialized: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return serialized
