"""exchange: X-Road client register, idempotent X-Road receipt, transactional outbox

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "xroad_member",
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("x_road_instance", sa.String(length=64), nullable=False),
        sa.Column("member_class", sa.String(length=64), nullable=False),
        sa.Column("member_code", sa.String(length=64), nullable=False),
        sa.Column("subsystem_code", sa.String(length=64), nullable=True),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("security_server_url", sa.String(length=2048), nullable=False),
        sa.Column("service_provider", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["admin_organization.id"]),
        sa.PrimaryKeyConstraint("client_id"),
    )
    with op.batch_alter_table("xroad_member", schema=None) as batch_op:
        batch_op.create_index("ix_xroad_member_organization", ["organization_id"], unique=False)
    op.create_table(
        "xroad_inbound",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("service_code", sa.String(length=255), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("client_id", "message_id", name="uq_xroad_inbound_message"),
    )
    op.create_table(
        "outbox_message",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("service_code", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["admin_organization.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_message_id"),
    )
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_message_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_outbox_message_organization", ["organization_id", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_organization")
        batch_op.drop_index("ix_outbox_message_due")
    op.drop_table("outbox_message")
    op.drop_table("xroad_inbound")
    with op.batch_alter_table("xroad_member", schema=None) as batch_op:
        batch_op.drop_index("ix_xroad_member_organization")
    op.drop_table("xroad_member")
