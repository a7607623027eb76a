"""Test helpers shared by several test packages."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from gateway.admin.schema import organization


def add_organization(conn: Connection, org_id: str, name: str | None = None) -> None:
    """A bare row of the organisation register (without its FHIR Organization)."""
    conn.execute(
        insert(organization).values(
            id=org_id,
            name=name or org_id,
            org_type="wellbeing-area",
            identifiers=[],
            municipalities=[],
            created_at=0,
            updated_at=0,
        )
    )
