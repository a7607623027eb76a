"""The admin register as the Kela adapter's directory: which registered organisation
serves a municipality (the wellbeing area, or the City of Helsinki)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from gateway.admin.schema import organization


class RegisterDirectory:
    """``adapters.kela.Directory`` over ``admin_organization.municipalities``."""

    def __init__(self, conn: Connection) -> None:
        rows = conn.execute(
            select(organization.c.id, organization.c.org_type, organization.c.municipalities)
        )
        self._by_municipality: dict[str, str] = {}
        # A wellbeing area wins over another organisation that lists the same municipality.
        for org_id, _type, municipalities in sorted(
            rows, key=lambda row: row[1] != "wellbeing-area", reverse=True
        ):
            for code in municipalities or ():
                self._by_municipality[str(code)] = str(org_id)

    def wellbeing_area_for_municipality(self, municipality_code: str) -> str | None:
        return self._by_municipality.get(municipality_code)
