"""Relational schema of the resource store (SQLAlchemy Core).

- ``resource``: the current version of every resource (one indexed lookup per read).
- ``resource_version``: every version ever written (vread, history). A version's body
  is written here only when a newer version supersedes it: the current version's body
  is stored once, in ``resource``, so a create writes it once.
- ``sp_*``: the search index of the current versions, one table per search-parameter
  type (search.html §3.1.1.4), written in the same transaction as the resource.

The schema itself is created by the Alembic migrations in ``migrations/``; this module
only describes it for query building. Timestamps are integers: microseconds since the
Unix epoch, UTC. Date index ranges are half-open ``[low, high)``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

PrimaryKey = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource",
    metadata,
    Column("pk", PrimaryKey, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("body", LargeBinary, nullable=True),
    # The data controller that holds the resource (the organisation of the client that
    # created it; never changes) and the id of the Patient the resource is about.
    Column("custodian", String(64), nullable=True),
    Column("client", String(64), nullable=True),
    UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
    Index("ix_resource_custodian", "res_type", "custodian"),
)

resource_version = Table(
    "resource_version",
    metadata,
    Column("resource_pk", PrimaryKey, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("body", LargeBinary, nullable=True),
    Index("ix_version_updated", "last_updated"),
    Index("ix_version_type_updated", "res_type", "last_updated"),
)


def _index_table(name: str, *columns: Column[object], indexes: tuple[Index, ...] = ()) -> Table:
    return Table(
        name,
        metadata,
        Column("resource_pk", PrimaryKey, nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
        Index(f"ix_{name}_resource", "resource_pk"),
        *indexes,
    )


sp_token = _index_table(
    "sp_token",
    Column("system", String(256), nullable=True),
    Column("code", String(256), nullable=True),
    Column("text", String(256), nullable=True),
    indexes=(Index("ix_sp_token_lookup", "res_type", "param", "code", "system"),),
)

sp_string = _index_table(
    "sp_string",
    Column("value_norm", String(256), nullable=False),
    Column("value_exact", Text, nullable=False),
    indexes=(Index("ix_sp_string_lookup", "res_type", "param", "value_norm"),),
)

sp_reference = _index_table(
    "sp_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("target_url", String(512), nullable=True),
    indexes=(
        Index("ix_sp_reference_lookup", "res_type", "param", "target_id", "target_type"),
        Index("ix_sp_reference_target", "target_type", "target_id"),
    ),
)

sp_date = _index_table(
    "sp_date",
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    indexes=(
        Index("ix_sp_date_low", "res_type", "param", "low"),
        Index("ix_sp_date_high", "res_type", "param", "high"),
    ),
)

sp_number = _index_table(
    "sp_number",
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("system", String(256), nullable=True),
    Column("code", String(64), nullable=True),
    indexes=(Index("ix_sp_number_lookup", "res_type", "param", "value"),),
)

sp_uri = _index_table(
    "sp_uri",
    Column("value", String(512), nullable=False),
    indexes=(Index("ix_sp_uri_lookup", "res_type", "param", "value"),),
)

# What the Consents in force permit or deny (consent.html §2.1.3.2 provisions), one row per
# (patient, actor, purpose, class of data) of each active Consent; ``*`` matches anything.
consent_grant = _index_table(
    "sp_consent_grant",
    Column("patient_id", String(64), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("data_class", String(64), nullable=False),
    Column("effect", String(8), nullable=False),
    Column("period_low", BigInteger, nullable=True),
    Column("period_high", BigInteger, nullable=True),
    indexes=(Index("ix_sp_consent_grant_lookup", "patient_id", "actor", "effect"),),
)

INDEX_TABLES: dict[str, Table] = {
    "token": sp_token,
    "string": sp_string,
    "reference": sp_reference,
    "date": sp_date,
    "number": sp_number,
    "uri": sp_uri,
}

# Every table derived from the current version of a resource, rewritten with it.
DERIVED_TABLES: dict[str, Table] = {**INDEX_TABLES, "consent_grant": consent_grant}
