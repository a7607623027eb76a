"""Tables of the X-Road channel (migration 0006).

- ``xroad_member``: the register of X-Road clients (members and subsystems), each
  mapped to a registered organisation, with the security server that receives the
  gateway's messages to it and the provider part of the services called there;
- ``xroad_inbound``: the response given to every accepted request, by calling client
  and X-Road message id, so that a repeated message gets the same response and
  changes nothing.

Timestamps are microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from gateway.admin.schema import organization
from gateway.store.schema import PrimaryKey

metadata = MetaData()

member = Table(
    "xroad_member",
    metadata,
    # The client identifier in its string form (INSTANCE/CLASS/CODE[/SUBSYSTEM]).
    Column("client_id", String(255), primary_key=True),
    Column("x_road_instance", String(64), nullable=False),
    Column("member_class", String(64), nullable=False),
    Column("member_code", String(64), nullable=False),
    Column("subsystem_code", String(64), nullable=True),
    Column("organization_id", String(64), ForeignKey(organization.c.id), nullable=False),
    Column("security_server_url", String(2048), nullable=False),
    # The member or subsystem whose services the gateway calls (string form).
    Column("service_provider", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_xroad_member_organization", "organization_id"),
)

inbound = Table(
    "xroad_inbound",
    metadata,
    Column("pk", PrimaryKey, primary_key=True, autoincrement=True),
    Column("client_id", String(255), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("service_code", String(255), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    UniqueConstraint("client_id", "message_id", name="uq_xroad_inbound_message"),
)
