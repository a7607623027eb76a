"""resource store and search index

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    )
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resource_type_updated", ["res_type", "last_updated"], unique=False
        )

    op.create_table(
        "resource_version",
        sa.Column(
            "resource_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("resource_pk", "version"),
    )
    with op.batch_alter_table("resource_version", schema=None) as batch_op:
        batch_op.create_index("ix_version_type_updated", ["res_type", "last_updated"], unique=False)
        batch_op.create_index("ix_version_updated", ["last_updated"], unique=False)

    op.create_table(
        "sp_date",
        sa.Column(
            "resource_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("low", sa.BigInteger(), nullable=False),
        sa.Column("high", sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table("sp_date", schema=None) as batch_op:
        batch_op.create_index("ix_sp_date_high", ["res_type", "param", "high"], unique=False)
        batch_op.create_index("ix_sp_date_low", ["res_type", "param", "low"], unique=False)
        batch_op.create_index("ix_sp_date_resource", ["resource_pk"], unique=False)

    op.create_table(
        "sp_number",
        sa.Column(
            "resource_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("system", sa.String(length=256), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
    )
    with op.batch_alter_table("sp_number", schema=None) as batch_op:
        batch_op.create_index("ix_sp_number_lookup", ["res_type", "param", "value"], unique=False)
        batch_op.create_index("ix_sp_number_resource", ["resource_pk"], unique=False)

    op.create_table(
        "sp_reference",
        sa.Column(
            "resource_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("target_url", sa.String(length=512), nullable=True),
    )
    with op.batch_alter_table("sp_reference", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sp_reference_lookup",
            ["res_type", "param", "target_id", "target_type"],
            unique=False,
        )
        batch_op.create_index("ix_sp_reference_resource", ["resource_pk"], unique=False)
        batch_op.create_index("ix_sp_reference_target", ["target_type", "target_id"], unique=False)

    op.create_table(
        "sp_string",
        sa.Column(
            "resource_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("value_norm", sa.String(length=256), nullable=False),
        sa.Column("value_exact", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("sp_string", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sp_string_lookup", ["res_type", "param", "value_norm"], unique=False
        )
        batch_op.create_index("ix_sp_string_resource", ["resource_pk"], unique=False)

    op.create_table(
        "sp_token",
        sa.Column(
            "resource_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=256), nullable=True),
        sa.Column("code", sa.String(length=256), nullable=True),
        sa.Column("text", sa.String(length=256), nullable=True),
    )
    with op.batch_alter_table("sp_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sp_token_lookup", ["res_type", "param", "code", "system"], unique=False
        )
        batch_op.create_index("ix_sp_token_resource", ["resource_pk"], unique=False)

    op.create_table(
        "sp_uri",
        sa.Column(
            "resource_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
    )
    with op.batch_alter_table("sp_uri", schema=None) as batch_op:
        batch_op.create_index("ix_sp_uri_lookup", ["res_type", "param", "value"], unique=False)
        batch_op.create_index("ix_sp_uri_resource", ["resource_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sp_uri", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_uri_resource")
        batch_op.drop_index("ix_sp_uri_lookup")

    op.drop_table("sp_uri")
    with op.batch_alter_table("sp_token", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_token_resource")
        batch_op.drop_index("ix_sp_token_lookup")

    op.drop_table("sp_token")
    with op.batch_alter_table("sp_string", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_string_resource")
        batch_op.drop_index("ix_sp_string_lookup")

    op.drop_table("sp_string")
    with op.batch_alter_table("sp_reference", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_reference_target")
        batch_op.drop_index("ix_sp_reference_resource")
        batch_op.drop_index("ix_sp_reference_lookup")

    op.drop_table("sp_reference")
    with op.batch_alter_table("sp_number", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_number_resource")
        batch_op.drop_index("ix_sp_number_lookup")

    op.drop_table("sp_number")
    with op.batch_alter_table("sp_date", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_date_resource")
        batch_op.drop_index("ix_sp_date_low")
        batch_op.drop_index("ix_sp_date_high")

    op.drop_table("sp_date")
    with op.batch_alter_table("resource_version", schema=None) as batch_op:
        batch_op.drop_index("ix_version_updated")
        batch_op.drop_index("ix_version_type_updated")

    op.drop_table("resource_version")
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.drop_index("ix_resource_type_updated")

    op.drop_table("resource")
