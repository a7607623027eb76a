"""admin register: organisations, data-sharing agreements and their event history

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_organization",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("org_type", sa.String(length=32), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("municipalities", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "admin_agreement",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("legal_basis_statute", sa.String(length=256), nullable=False),
        sa.Column("legal_basis_text", sa.Text(), nullable=False),
        sa.Column("consent_required", sa.Boolean(), nullable=False),
        sa.Column("write_allowed", sa.Boolean(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("approvals", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["provider"], ["admin_organization.id"]),
        sa.ForeignKeyConstraint(["recipient"], ["admin_organization.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("admin_agreement", schema=None) as batch_op:
        batch_op.create_index(
            "ix_admin_agreement_parties", ["provider", "recipient", "status"], unique=False
        )
        batch_op.create_index("ix_admin_agreement_recipient", ["recipient"], unique=False)
    op.create_table(
        "admin_agreement_event",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("agreement_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["agreement_id"], ["admin_agreement.id"]),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("agreement_id", "version", name="uq_admin_agreement_event_version"),
    )


def downgrade() -> None:
    op.drop_table("admin_agreement_event")
    with op.batch_alter_table("admin_agreement", schema=None) as batch_op:
        batch_op.drop_index("ix_admin_agreement_recipient")
        batch_op.drop_index("ix_admin_agreement_parties")
    op.drop_table("admin_agreement")
    op.drop_table("admin_organization")
