"""Outbound X-Road requests through the transactional outbox.

:func:`enqueue_request` builds the request envelope (X-Road message protocol v4.0
§2.2-2.3) for a service of a registered organisation and puts it in the outbox in the
caller's transaction; the outbox dispatcher delivers it to the organisation's
security server. The gateway's own client identifier comes from
``SILTA_XROAD_CLIENT`` (e.g. ``FI/GOV/1234567-8/silta``) unless given.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from adapters.xroad.envelope import build_request
from adapters.xroad.identifiers import ClientId, InvalidIdentifier
from adapters.xroad.members import member_of_organization
from gateway.errors import Unprocessable
from gateway.outbox.messages import enqueue

GATEWAY_CLIENT_VARIABLE = "SILTA_XROAD_CLIENT"


def gateway_client(env: Mapping[str, str] | None = None) -> ClientId:
    """The gateway's own X-Road member or subsystem, from ``SILTA_XROAD_CLIENT``."""
    value = (os.environ if env is None else env).get(GATEWAY_CLIENT_VARIABLE, "").strip()
    if not value:
        raise Unprocessable(
            f"{GATEWAY_CLIENT_VARIABLE} is not set: the gateway's X-Road client identifier "
            "(INSTANCE/MEMBER_CLASS/MEMBER_CODE[/SUBSYSTEM_CODE]) is needed to send requests"
        )
    try:
        return ClientId.parse(value)
    except InvalidIdentifier as error:
        raise Unprocessable(f"{GATEWAY_CLIENT_VARIABLE}: {error}") from None


def enqueue_request(
    conn: Connection,
    *,
    organization_id: str,
    service_code: str,
    body: Any,
    message_id: str | None = None,
    service_version: str | None = None,
    user_id: str | None = None,
    issue: str | None = None,
    client: ClientId | None = None,
) -> str:
    """Queues a request to ``service_code`` of ``organization_id`` and returns its
    message id (a new UUID unless given; a stable id derived from the cause makes a
    repeated change queue nothing new)."""
    member = member_of_organization(conn, organization_id)
    if member is None:
        raise Unprocessable(f"Organisation {organization_id} has no registered X-Road member")
    message_id = message_id or str(uuid.uuid4())
    payload = build_request(
        client=client or gateway_client(),
        service=member.service(service_code, service_version),
        message_id=message_id,
        body=body,
        user_id=user_id,
        issue=issue,
    )
    enqueue(
        conn,
        message_id=message_id,
        organization_id=organization_id,
        url=member.security_server_url,
        service_code=service_code,
        payload=payload,
    )
    return message_id
