"""The table of the transactional outbox (migration 0006).

``outbox_message`` holds every outbound message from the moment the change that
caused it commits (it is written in the same transaction) until it is delivered or
given up: its stable message id (receivers drop duplicates by it), the receiving
organisation and URL, the complete payload, and the delivery state. Timestamps are
microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.admin.schema import organization
from gateway.store.schema import PrimaryKey

metadata = MetaData()

outbox_message = Table(
    "outbox_message",
    metadata,
    Column("id", PrimaryKey, primary_key=True, autoincrement=True),
    Column("message_id", String(255), nullable=False),
    Column("organization_id", String(64), ForeignKey(organization.c.id), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("service_code", String(255), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    # pending | delivered | dead
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    UniqueConstraint("message_id", name="uq_outbox_message_message_id"),
    Index("ix_outbox_message_due", "status", "next_attempt_at"),
    Index("ix_outbox_message_organization", "organization_id", "status"),
)
