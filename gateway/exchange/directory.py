"""The admin register as the Kela adapter's directory: which registered organisation
serves a municipality (the wellbeing area, or the City of Helsinki)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select

from gateway.admin.schema import organization
from gateway.store.raw import RawExecutor, RawStatement

SELECT_SERVED = RawStatement(select(organization.c.id, organization.c.municipalities))


class RegisterDirectory:
    """``adapters.kela.Directory`` over ``admin_organization.municipalities``, read
    with one fixed statement on the caller's connection."""

    def __init__(self, conn: Connection) -> None:
        # Only wellbeing areas (and the City of Helsinki) list municipalities.
        self._by_municipality = {
            str(code): str(org_id)
            for org_id, municipalities in RawExecutor.of(conn).fetchall(SELECT_SERVED, {})
            for code in _json(municipalities) or ()
        }

    def wellbeing_area_for_municipality(self, municipality_code: str) -> str | None:
        return self._by_municipality.get(municipality_code)


def _json(value: Any) -> Any:
    """A JSON column as the driver returns it: text on SQLite, decoded on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
