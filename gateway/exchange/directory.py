"""The admin register as the Kela adapter's directory: which registered organisation
serves a municipality (the wellbeing area, or the City of Helsinki)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from gateway.admin.schema import organization
from gateway.store.raw import RawExecutor, RawStatement, json_column

SELECT_SERVED = RawStatement(select(organization.c.id, organization.c.municipalities))


class RegisterDirectory:
    """``adapters.kela.Directory`` over ``admin_organization.municipalities``, read
    with one fixed statement on the caller's connection."""

    def __init__(self, conn: Connection) -> None:
        # Only wellbeing areas (and the City of Helsinki) list municipalities.
        self._by_municipality = {
            str(code): str(org_id)
            for org_id, municipalities in RawExecutor.of(conn).fetchall(SELECT_SERVED, {})
            for code in json_column(municipalities) or ()
        }

    def wellbeing_area_for_municipality(self, municipality_code: str) -> str | None:
        return self._by_municipality.get(municipality_code)
