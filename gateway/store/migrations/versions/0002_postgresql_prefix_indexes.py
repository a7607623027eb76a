"""PostgreSQL: byte-order indexes for prefix searches on strings, token text and uris

String prefix matching compares in COLLATE "C" (exact code-point ranges under any
database collation); these indexes serve it. SQLite needs none: its default
collation is already binary.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_sp_string_prefix", "sp_string", "value_norm"),
    ("ix_sp_token_text_prefix", "sp_token", "text"),
    ("ix_sp_uri_prefix", "sp_uri", "value"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, column in INDEXES:
        op.execute(f'CREATE INDEX {name} ON {table} (res_type, param, {column} COLLATE "C")')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _table, _column in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
