"""Tables of the access and disclosure log (migration 0005): one hash-chained entry per
request, and the keys it is found by (the clients' HETUs and the organisations involved).
Both are append-only (database triggers)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, MetaData, String, Table

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
    Column("record", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# ``hetu:<HETU>`` and ``org:<organisation id>`` of every entry: the per-client extract and
# the per-organisation view are lookups on this one index.
audit_key = Table(
    "audit_key",
    metadata,
    Column("key", String(96), primary_key=True),
    Column("seq", PrimaryKey, ForeignKey("audit_entry.seq"), primary_key=True),
)
