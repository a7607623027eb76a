"""current body stored once: a version row holds its body only once superseded

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

The current version's body lives in ``resource`` alone; its ``resource_version`` row
gets the body when a newer version supersedes it. Rows of current versions written
before this revision drop their copy here (downgrade copies it back).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_CURRENT_VERSION_ROW = (
    "resource_version.resource_pk = resource.pk AND resource_version.version = resource.version"
)


def upgrade() -> None:
    op.get_bind().execute(
        sa.text(
            "UPDATE resource_version SET body = NULL WHERE EXISTS "
            f"(SELECT 1 FROM resource WHERE {_CURRENT_VERSION_ROW})"
        )
    )


def downgrade() -> None:
    op.get_bind().execute(
        sa.text(
            "UPDATE resource_version SET body = "
            f"(SELECT resource.body FROM resource WHERE {_CURRENT_VERSION_ROW}) "
            f"WHERE EXISTS (SELECT 1 FROM resource WHERE {_CURRENT_VERSION_ROW})"
        )
    )
