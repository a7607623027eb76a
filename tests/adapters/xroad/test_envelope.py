"""SOAP 1.1 envelopes of the X-Road message protocol v4.0: parsing, echoing responses,
faults and outbound requests."""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.xroad.envelope import (
    IDENTIFIERS_NS,
    SOAP_ENV_NS,
    XROAD_NS,
    FaultCode,
    XRoadFault,
    build_fault,
    build_request,
    build_response,
    parse_fault,
    parse_request,
    response_element,
)
from adapters.xroad.identifiers import ClientId, InvalidIdentifier, ServiceId

KELA_NS = "urn:example:kela:test"

CLIENT = """<xrd:client id:objectType="SUBSYSTEM">
      <id:xRoadInstance>FI</id:xRoadInstance>
      <id:memberClass>GOV</id:memberClass>
      <id:memberCode>0246246-0</id:memberCode>
      <id:subsystemCode>kela-sub</id:subsystemCode>
    </xrd:client>"""
SERVICE = """<xrd:service id:objectType="SERVICE">
      <id:xRoadInstance>FI</id:xRoadInstance>
      <id:memberClass>GOV</id:memberClass>
      <id:memberCode>1234567-8</id:memberCode>
      <id:subsystemCode>silta</id:subsystemCode>
      <id:serviceCode>ConcernNotification</id:serviceCode>
      <id:serviceVersion>v1</id:serviceVersion>
    </xrd:service>"""
STANDARD_HEADERS = (
    CLIENT,
    SERVICE,
    "<xrd:id>6f1c2a0e-5d7b-4c3e-9a51-0b8e2f4d7c19</xrd:id>",
    "<xrd:userId>FI010101-123N</xrd:userId>",
    "<xrd:issue>case-42</xrd:issue>",
    "<xrd:protocolVersion>4.0</xrd:protocolVersion>",
)
BODY = "<k:ConcernNotification><k:client>Aaltonen</k:client></k:ConcernNotification>"


def envelope(
    headers: tuple[str, ...] = STANDARD_HEADERS,
    body: str = BODY,
    *,
    envelope_ns: str = SOAP_ENV_NS,
    prolog: str = '<?xml version="1.0" encoding="UTF-8"?>',
) -> bytes:
    header = f"<SOAP-ENV:Header>{''.join(headers)}</SOAP-ENV:Header>" if headers else ""
    return (
        f"{prolog}\n"
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{envelope_ns}" xmlns:xrd="{XROAD_NS}" '
        f'xmlns:id="{IDENTIFIERS_NS}" xmlns:k="{KELA_NS}">'
        f"{header}<SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


def without(name: str) -> tuple[str, ...]:
    return tuple(h for h in STANDARD_HEADERS if f"<xrd:{name}" not in h)


def replaced(old: str, new: str) -> bytes:
    """The standard envelope with ``old`` replaced by ``new`` in its headers."""
    return envelope(tuple(h.replace(old, new) for h in STANDARD_HEADERS))


def canonical(element: object) -> bytes:
    """Exclusive canonical XML: equal for equal content whatever the ancestors declare."""
    text: bytes = etree.tostring(element, method="c14n", exclusive=True)
    return text


def refused(message: bytes) -> XRoadFault:
    with pytest.raises(XRoadFault) as caught:
        parse_request(message)
    return caught.value


# -- parsing ---------------------------------------------------------------------


def test_parses_headers_into_typed_values() -> None:
    request = parse_request(envelope())
    headers = request.headers
    assert headers.client == ClientId("FI", "GOV", "0246246-0", "kela-sub")
    assert headers.client.object_type == "SUBSYSTEM"
    assert headers.service == ServiceId(
        ClientId("FI", "GOV", "1234567-8", "silta"), "ConcernNotification", "v1"
    )
    assert headers.message_id == "6f1c2a0e-5d7b-4c3e-9a51-0b8e2f4d7c19"
    assert headers.user_id == "FI010101-123N"
    assert headers.issue == "case-42"
    assert headers.protocol_version == "4.0"
    assert request.service_code == "ConcernNotification"
    assert etree.QName(request.body).localname == "ConcernNotification"
    assert request.body.findtext(f"{{{KELA_NS}}}client") == "Aaltonen"


def test_member_client_and_optional_headers() -> None:
    member = CLIENT.replace('"SUBSYSTEM"', '"MEMBER"').replace(
        "<id:subsystemCode>kela-sub</id:subsystemCode>", ""
    )
    headers = (
        member,
        SERVICE,
        "<xrd:id>m-1</xrd:id>",
        "<xrd:protocolVersion>4.0</xrd:protocolVersion>",
    )
    request = parse_request(envelope(headers))
    assert request.client == ClientId("FI", "GOV", "0246246-0")
    assert str(request.client) == "FI/GOV/0246246-0"
    assert request.headers.user_id is None
    assert request.headers.issue is None


def test_keeps_every_header_element_in_original_order() -> None:
    extra = '<ext:trace xmlns:ext="urn:example:ext">abc</ext:trace>'
    headers = ("<xrd:protocolVersion>4.0</xrd:protocolVersion>", extra, *without("protocolVersion"))
    request = parse_request(envelope(headers))
    names = [etree.QName(e).localname for e in request.header_elements]
    assert names == ["protocolVersion", "trace", "client", "service", "id", "userId", "issue"]


def test_accepts_a_utf8_byte_order_mark_and_other_prefixes() -> None:
    message = envelope().replace(b"xrd:", b"x:").replace(b"xmlns:xrd", b"xmlns:x")
    request = parse_request(b"\xef\xbb\xbf" + message)
    assert request.message_id == "6f1c2a0e-5d7b-4c3e-9a51-0b8e2f4d7c19"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"this is not xml", "not well-formed XML"),
        (b"", "not well-formed XML"),
        (b"<Envelope/>", "Envelope must be in the SOAP 1.1 namespace"),
        (b"<root/>", "not a SOAP 1.1 Envelope"),
        (envelope(headers=()), "no Header"),
        (envelope(without("client")), "header client is missing"),
        (envelope(without("service")), "header service is missing"),
        (envelope(without("id")), "header id is missing"),
        (envelope(without("protocolVersion")), "header protocolVersion is missing"),
        (
            envelope((*STANDARD_HEADERS, "<xrd:id>second</xrd:id>")),
            "header id appears more than once",
        ),
        (envelope((CLIENT, *STANDARD_HEADERS)), "header client appears more than once"),
        (replaced(">4.0<", ">3.1<"), "protocolVersion must be 4.0, not '3.1'"),
        (
            replaced('"SUBSYSTEM"', '"SERVICE"'),
            "client must have objectType MEMBER or SUBSYSTEM, not 'SERVICE'",
        ),
        (
            replaced('id:objectType="SERVICE"', 'id:objectType="MEMBER"'),
            "service must have objectType SERVICE, not 'MEMBER'",
        ),
        (replaced(' id:objectType="SUBSYSTEM"', ""), "client has no id:objectType"),
        (
            replaced("<id:subsystemCode>kela-sub</id:subsystemCode>", ""),
            "objectType SUBSYSTEM but no subsystemCode",
        ),
        (
            replaced("<id:memberCode>0246246-0</id:memberCode>", ""),
            "client has no memberCode",
        ),
        (
            replaced("<id:serviceCode>ConcernNotification</id:serviceCode>", ""),
            "service has no serviceCode",
        ),
        (
            replaced("<id:memberCode>0246246-0<", "<id:memberCode>02/46<"),
            "memberCode is '02/46'",
        ),
        (
            replaced(
                "<id:serviceVersion>v1<",
                "<id:serviceVersion>v1</id:serviceVersion><id:serviceVersion>v2<",
            ),
            "service has serviceVersion more than once",
        ),
        (
            replaced("<id:subsystemCode>kela-sub<", "<id:subsystemCode><x/><"),
            "must hold text, not elements",
        ),
        (replaced("6f1c2a0e-5d7b-4c3e-9a51-0b8e2f4d7c19", " "), "header id is empty"),
        (envelope(body=""), "Body is empty"),
        (
            envelope(body=BODY + BODY),
            "exactly one element, not ConcernNotification, ConcernNotification",
        ),
        (envelope(body="<k:BenefitDecision/>"), "BenefitDecision does not match the serviceCode"),
    ],
)
def test_refuses_malformed_messages_with_a_client_fault(message: bytes, expected: str) -> None:
    fault = refused(message)
    assert expected in fault.message
    assert fault.code in (FaultCode.CLIENT, FaultCode.VERSION_MISMATCH)


def test_a_soap_12_envelope_is_a_version_mismatch() -> None:
    fault = refused(envelope(envelope_ns="http://www.w3.org/2003/05/soap-envelope"))
    assert fault.code is FaultCode.VERSION_MISMATCH


def test_unknown_header_that_must_be_understood_is_refused() -> None:
    header = '<ext:secret xmlns:ext="urn:example:ext" SOAP-ENV:mustUnderstand="1">x</ext:secret>'
    fault = refused(envelope((*STANDARD_HEADERS, header)))
    assert fault.code is FaultCode.MUST_UNDERSTAND
    optional = header.replace('mustUnderstand="1"', 'mustUnderstand="0"')
    assert len(parse_request(envelope((*STANDARD_HEADERS, optional))).header_elements) == 7


@pytest.mark.parametrize(
    "prolog",
    [
        '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>',
        '<?xml version="1.0"?><!DOCTYPE Envelope SYSTEM "http://127.0.0.1:9/evil.dtd">',
    ],
)
def test_refuses_doctype_and_entities(prolog: str) -> None:
    fault = refused(envelope(prolog=prolog, body=BODY.replace("Aaltonen", "&xxe;")))
    assert "DTDs and entity declarations are not allowed" in fault.message
    assert fault.code is FaultCode.CLIENT


# -- responses ---------------------------------------------------------------------


def test_response_echoes_the_request_headers_in_order_with_the_same_values() -> None:
    extra = '<ext:trace xmlns:ext="urn:example:ext">abc</ext:trace>'
    request_bytes = envelope((*STANDARD_HEADERS[:2], extra, *STANDARD_HEADERS[2:]))
    request = parse_request(request_bytes)
    body = response_element(request)
    etree.SubElement(body, f"{{{KELA_NS}}}accepted").text = "true"
    response = build_response(request, body)

    sent = etree.fromstring(request_bytes).find(f"{{{SOAP_ENV_NS}}}Header")
    echoed = etree.fromstring(response).find(f"{{{SOAP_ENV_NS}}}Header")
    assert [e.tag for e in echoed] == [e.tag for e in sent]
    for original, copy in zip(sent, echoed, strict=True):
        assert canonical(copy) == canonical(original)
    answer = etree.fromstring(response).find(f"{{{SOAP_ENV_NS}}}Body")[0]
    assert answer.tag == f"{{{KELA_NS}}}ConcernNotificationResponse"
    assert answer.findtext(f"{{{KELA_NS}}}accepted") == "true"
    # The response is itself a well-formed X-Road message with the same headers.
    assert parse_fault(response) is None


def test_response_body_may_be_serialized_xml() -> None:
    request = parse_request(envelope())
    response = build_response(request, f'<r:ConcernNotificationResponse xmlns:r="{KELA_NS}"/>')
    body = etree.fromstring(response).find(f"{{{SOAP_ENV_NS}}}Body")
    assert [e.tag for e in body] == [f"{{{KELA_NS}}}ConcernNotificationResponse"]
    with pytest.raises(XRoadFault):
        build_response(request, b"<!DOCTYPE x><x/>")


# -- faults ------------------------------------------------------------------------


def test_fault_envelope_per_soap_11() -> None:
    fault = build_fault(FaultCode.CLIENT, "The HETU check character is wrong", detail="hetu")
    root = etree.fromstring(fault)
    element = root.find(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault")
    assert element is not None
    code = element.findtext("faultcode")
    prefix, _, local = code.partition(":")
    assert element.nsmap[prefix] == SOAP_ENV_NS and local == "Client"
    assert element.findtext("faultstring") == "The HETU check character is wrong"
    assert element.findtext("detail/faultDetail") == "hetu"
    assert root.find(f"{{{SOAP_ENV_NS}}}Header") is None
    parsed = parse_fault(fault)
    assert parsed is not None
    assert (parsed.code, parsed.string, parsed.detail) == (
        "SOAP-ENV:Client",
        "The HETU check character is wrong",
        "hetu",
    )


def test_fault_may_echo_the_request_headers() -> None:
    request = parse_request(envelope())
    fault = XRoadFault("Unknown X-Road client", detail="FI/GOV/0246246-0/kela-sub")
    root = etree.fromstring(fault.envelope(request))
    header = root.find(f"{{{SOAP_ENV_NS}}}Header")
    assert header is not None and len(header) == len(STANDARD_HEADERS)
    server = build_fault(FaultCode.SERVER, "database unavailable")
    assert parse_fault(server) is not None
    assert parse_fault(server).code == "SOAP-ENV:Server"  # type: ignore[union-attr]


def test_parse_fault_refuses_what_is_not_an_envelope() -> None:
    with pytest.raises(XRoadFault):
        parse_fault(b"<html>Bad gateway</html>")


# -- outbound requests -------------------------------------------------------------


def test_outbound_request_round_trips_through_the_parser() -> None:
    client = ClientId("FI", "GOV", "1234567-8", "silta")
    service = ServiceId(ClientId("FI", "GOV", "0246246-0", "kela-sub"), "NotificationFeedback")
    body = etree.Element(f"{{{KELA_NS}}}NotificationFeedback", nsmap={"k": KELA_NS})
    etree.SubElement(body, f"{{{KELA_NS}}}status").text = "accepted"
    message = build_request(
        client=client, service=service, message_id="feedback-1", body=body, issue="task-9"
    )
    request = parse_request(message)
    assert request.client == client
    assert request.headers.service == service
    assert request.headers.service.service_version is None
    assert request.message_id == "feedback-1"
    assert request.headers.issue == "task-9"
    assert request.headers.user_id is None
    names = [etree.QName(e).localname for e in request.header_elements]
    assert names == ["client", "service", "id", "issue", "protocolVersion"]
    assert request.body.findtext(f"{{{KELA_NS}}}status") == "accepted"
    assert message.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


# -- identifiers -------------------------------------------------------------------


def test_client_identifier_string_form() -> None:
    assert ClientId.parse("FI/GOV/0245437-2/kela-sub") == ClientId(
        "FI", "GOV", "0245437-2", "kela-sub"
    )
    assert str(ClientId.parse(" FI/GOV/0245437-2 ")) == "FI/GOV/0245437-2"
    service = ServiceId(ClientId("FI", "GOV", "0245437-2"), "getX", "v2")
    assert str(service) == "FI/GOV/0245437-2/getX/v2"
    for bad in ("FI/GOV", "FI/GOV/1/2/3", "FI//123", "FI/G V/123"):
        with pytest.raises(InvalidIdentifier):
            ClientId.parse(bad)
