"""trust layer: custodian and client of every resource, consent grants, audit log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("audit_entry", "audit_key")


def upgrade() -> None:
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.add_column(sa.Column("custodian", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("client", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_resource_custodian", ["res_type", "custodian"], unique=False)
    op.create_table(
        "sp_consent_grant",
        sa.Column("resource_pk", PK, nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("data_class", sa.String(length=64), nullable=False),
        sa.Column("effect", sa.String(length=8), nullable=False),
        sa.Column("period_low", sa.BigInteger(), nullable=True),
        sa.Column("period_high", sa.BigInteger(), nullable=True),
    )
    with op.batch_alter_table("sp_consent_grant", schema=None) as batch_op:
        batch_op.create_index("ix_sp_consent_grant_resource", ["resource_pk"], unique=False)
        batch_op.create_index(
            "ix_sp_consent_grant_lookup", ["patient_id", "actor", "effect"], unique=False
        )
    op.create_table(
        "audit_entry",
        sa.Column("seq", PK, autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("organization", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=256), nullable=True),
        sa.Column("purpose", sa.String(length=64), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "audit_key",
        sa.Column("key", sa.String(length=96), nullable=False),
        sa.Column("seq", PK, nullable=False),
        sa.ForeignKeyConstraint(["seq"], ["audit_entry.seq"]),
        sa.PrimaryKeyConstraint("key", "seq"),
    )
    # The log is append-only in the database itself, not only in the code.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION silta_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION silta_append_only()"
            )
    else:
        for table in APPEND_ONLY:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION silta_append_only()")
    op.drop_table("audit_key")
    op.drop_table("audit_entry")
    op.drop_table("sp_consent_grant")
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.drop_index("ix_resource_custodian")
        batch_op.drop_column("client")
        batch_op.drop_column("custodian")
