"""Outbound X-Road requests queued in the outbox for a registered organisation."""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.xroad import members
from adapters.xroad.envelope import parse_request
from adapters.xroad.identifiers import ClientId, ServiceId
from adapters.xroad.outbound import enqueue_request, gateway_client
from gateway.errors import Unprocessable
from gateway.outbox import messages
from gateway.store.database import Database
from tests.support import add_organization

SILTA = ClientId("FI", "GOV", "1234567-8", "silta")
KELA = ClientId("FI", "GOV", "0246246-0", "kela-sub")


def test_queues_a_request_to_the_organisations_service(database: Database) -> None:
    with database.write() as conn:
        add_organization(conn, "kela")
        members.add_member(
            conn, client=KELA, organization_id="kela", security_server_url="http://ss.kela/"
        )
        body = etree.Element("{urn:example:kela}NotificationFeedback")
        message_id = enqueue_request(
            conn,
            organization_id="kela",
            service_code="NotificationFeedback",
            service_version="v1",
            body=body,
            client=SILTA,
            message_id="feedback-task-1-v2",
        )
    assert message_id == "feedback-task-1-v2"
    with database.read() as conn:
        queued = messages.find_message(conn, message_id)
    assert queued is not None
    assert (queued.url, queued.organization_id, queued.status) == (
        "http://ss.kela/",
        "kela",
        "pending",
    )
    request = parse_request(queued.payload)
    assert request.client == SILTA
    assert request.headers.service == ServiceId(KELA, "NotificationFeedback", "v1")
    assert request.message_id == "feedback-task-1-v2"


def test_an_organisation_without_x_road_member_is_refused(database: Database) -> None:
    with pytest.raises(Unprocessable, match="no registered X-Road member"), database.write() as c:
        add_organization(c, "pirha")
        enqueue_request(c, organization_id="pirha", service_code="X", body=b"<X/>", client=SILTA)


def test_gateway_client_from_the_environment() -> None:
    assert gateway_client({"SILTA_XROAD_CLIENT": "FI/GOV/1234567-8/silta"}) == SILTA
    with pytest.raises(Unprocessable, match="SILTA_XROAD_CLIENT is not set"):
        gateway_client({})
    with pytest.raises(Unprocessable, match="not an X-Road client identifier"):
        gateway_client({"SILTA_XROAD_CLIENT": "FI/GOV"})
