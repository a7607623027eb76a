"""Tables of the authorization server (created by migration 0003).

Times are whole seconds since the epoch (UTC), the unit of JWT ``exp`` / ``iat``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, MetaData, String, Table, Text

metadata = MetaData()

auth_signing_key = Table(
    "auth_signing_key",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_key_pem", Text(), nullable=False),
    Column("public_jwk", Text(), nullable=False),
    Column("created_at", BigInteger(), nullable=False),
    Column("retired_at", BigInteger(), nullable=True),
)

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("organization_id", String(128), nullable=False),
    Column("jwks", Text(), nullable=False),
    Column("scopes", Text(), nullable=False),
    Column("is_admin", Boolean(), nullable=False),
    Column("default_purpose", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger(), nullable=False),
)

auth_jti = Table(
    "auth_jti",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", BigInteger(), nullable=False),
    Index("ix_auth_jti_expires", "expires_at"),
)
