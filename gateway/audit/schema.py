"""Tables of the access and disclosure log (migration 0005): hash-chained entries and
the clients (HETU) each entry concerns. Both are append-only (database triggers)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, MetaData, String, Table

from gateway.store.schema import PrimaryKey

metadata = MetaData()

audit_entry = Table(
    "audit_entry",
    metadata,
    Column("seq", PrimaryKey, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("client_id", String(128), nullable=True),
    Column("organization", String(64), nullable=True),
    Column("user_id", String(256), nullable=True),
    Column("purpose", String(64), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("recipient", String(64), nullable=True),
    Column("record", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_entry_at", "at"),
    Index("ix_audit_entry_organization", "organization", "at"),
)

audit_subject = Table(
    "audit_subject",
    metadata,
    Column("seq", PrimaryKey, ForeignKey("audit_entry.seq"), primary_key=True),
    Column("hetu", String(32), primary_key=True),
    Index("ix_audit_subject_hetu", "hetu", "seq"),
)
