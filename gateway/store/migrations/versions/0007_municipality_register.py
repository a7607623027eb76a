"""municipality register: which organisation serves each municipality, by key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Organisations registered before this revision keep their lists; each municipality goes
to the first organisation (by id) that lists it, the one the exchange chose before.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    served = op.create_table(
        "admin_organization_municipality",
        sa.Column("municipality_code", sa.String(length=8), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["admin_organization.id"]),
        sa.PrimaryKeyConstraint("municipality_code"),
    )
    assert served is not None
    listed = op.get_bind().execute(
        sa.text("SELECT id, municipalities FROM admin_organization ORDER BY id")
    )
    rows: dict[str, str] = {}
    for org_id, municipalities in listed:
        codes = json.loads(municipalities) if isinstance(municipalities, str) else municipalities
        for code in codes or ():
            rows.setdefault(code, org_id)
    if rows:
        op.bulk_insert(
            served,
            [{"municipality_code": code, "organization_id": org} for code, org in rows.items()],
        )


def downgrade() -> None:
    op.drop_table("admin_organization_municipality")
