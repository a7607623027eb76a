"""Tables of the admin register: organisations, data-sharing agreements and the
append-only event history of every agreement (migration 0004), and which organisation
serves each municipality (migration 0007)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.store.schema import PrimaryKey

metadata = MetaData()


organization = Table(
    "admin_organization",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("org_type", String(32), nullable=False),
    Column("identifiers", JSON, nullable=False),
    Column("municipalities", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# The register's index of ``admin_organization.municipalities``: one row per municipality
# code (Statistics Finland, urn:oid:1.2.246.537.6.21), so a municipality is served by at
# most one organisation and the exchange finds it by key.
organization_municipality = Table(
    "admin_organization_municipality",
    metadata,
    Column("municipality_code", String(8), primary_key=True),
    Column("organization_id", String(64), ForeignKey("admin_organization.id"), nullable=False),
)

agreement = Table(
    "admin_agreement",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("provider", String(64), ForeignKey("admin_organization.id"), nullable=False),
    Column("recipient", String(64), ForeignKey("admin_organization.id"), nullable=False),
    Column("categories", JSON, nullable=False),
    Column("purposes", JSON, nullable=False),
    Column("legal_basis_statute", String(256), nullable=False),
    Column("legal_basis_text", Text, nullable=False),
    Column("consent_required", Boolean, nullable=False),
    Column("write_allowed", Boolean, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_until", Date, nullable=True),
    Column("status", String(16), nullable=False),
    Column("approvals", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_admin_agreement_parties", "provider", "recipient", "status"),
    Index("ix_admin_agreement_recipient", "recipient"),
)

agreement_event = Table(
    "admin_agreement_event",
    metadata,
    Column("pk", PrimaryKey, primary_key=True, autoincrement=True),
    Column("agreement_id", String(64), ForeignKey("admin_agreement.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", JSON, nullable=False),
    UniqueConstraint("agreement_id", "version", name="uq_admin_agreement_event_version"),
)
