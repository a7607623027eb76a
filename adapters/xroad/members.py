"""The register of X-Road clients: which registered organisation an X-Road member or
subsystem (X-Road message protocol v4.0 §1.3) stands for, and where the gateway's
requests to that organisation go.

Every function works on a connection of the caller's transaction
(``Database.read()`` / ``Database.write()``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, bindparam, delete, insert, select

from adapters.xroad.identifiers import ClientId, ServiceId
from adapters.xroad.schema import member
from gateway.admin.schema import organization
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.store.raw import RawExecutor, RawStatement


@dataclass(frozen=True, slots=True)
class XRoadMember:
    """A registered X-Road client and the organisation it belongs to."""

    client: ClientId
    organization_id: str
    security_server_url: str
    service_provider: ClientId
    created_at: int

    def service(self, service_code: str, service_version: str | None = None) -> ServiceId:
        """The identifier of one of the organisation's services (§1.3)."""
        return ServiceId(self.service_provider, service_code, service_version)


def add_member(
    conn: Connection,
    *,
    client: ClientId,
    organization_id: str,
    security_server_url: str,
    service_provider: ClientId | None = None,
) -> XRoadMember:
    """Registers ``client`` as ``organization_id``; its services are called through
    ``security_server_url`` at ``service_provider`` (by default the client itself)."""
    parts = urlsplit(security_server_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unprocessable(f"'{security_server_url}' is not an http(s) URL of a security server")
    known = conn.execute(
        select(organization.c.id).where(organization.c.id == organization_id)
    ).first()
    if known is None:
        raise NotFound(f"Organisation {organization_id} is not registered")
    if find_member(conn, client) is not None:
        raise Conflict(f"The X-Road client {client} is already registered")
    registered = XRoadMember(
        client=client,
        organization_id=organization_id,
        security_server_url=security_server_url,
        service_provider=service_provider or client,
        created_at=time.time_ns() // 1000,
    )
    conn.execute(
        insert(member).values(
            client_id=str(client),
            x_road_instance=client.instance,
            member_class=client.member_class,
            member_code=client.member_code,
            subsystem_code=client.subsystem_code,
            organization_id=organization_id,
            security_server_url=security_server_url,
            service_provider=str(registered.service_provider),
            created_at=registered.created_at,
        )
    )
    return registered


def remove_member(conn: Connection, client: ClientId) -> None:
    """Removes ``client`` from the register."""
    removed = conn.execute(delete(member).where(member.c.client_id == str(client)))
    if removed.rowcount == 0:
        raise NotFound(f"The X-Road client {client} is not registered")


def list_members(conn: Connection, *, organization_id: str | None = None) -> list[XRoadMember]:
    """Registered clients, optionally of one organisation, oldest first."""
    query = select(member).order_by(member.c.created_at, member.c.client_id)
    if organization_id is not None:
        query = query.where(member.c.organization_id == organization_id)
    return [_member(row) for row in conn.execute(query).mappings()]


def find_member(conn: Connection, client: ClientId) -> XRoadMember | None:
    """The registration of ``client`` (e.g. a parsed ``client`` header), or None."""
    row = conn.execute(select(member).where(member.c.client_id == str(client))).mappings().first()
    return None if row is None else _member(row)


_ORGANIZATION_OF = RawStatement(
    select(member.c.organization_id).where(member.c.client_id == bindparam("client_id"))
)


def organization_of(db: Connection | RawExecutor, client: ClientId) -> str | None:
    """The id of the organisation ``client`` belongs to, or None when it is unknown
    (asked on every X-Road request: one precompiled statement)."""
    row = RawExecutor.of(db).fetchone(_ORGANIZATION_OF, {"client_id": str(client)})
    return None if row is None else str(row[0])


def member_of_organization(conn: Connection, organization_id: str) -> XRoadMember | None:
    """Where requests to ``organization_id`` go: its first registered client, or None."""
    found = list_members(conn, organization_id=organization_id)
    return found[0] if found else None


def _member(row: Any) -> XRoadMember:
    return XRoadMember(
        client=ClientId(
            row["x_road_instance"], row["member_class"], row["member_code"], row["subsystem_code"]
        ),
        organization_id=row["organization_id"],
        security_server_url=row["security_server_url"],
        service_provider=ClientId.parse(row["service_provider"]),
        created_at=row["created_at"],
    )
