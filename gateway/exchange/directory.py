"""The admin register as the Kela adapter's directory: which registered organisation
serves a municipality (the wellbeing area, or the City of Helsinki)."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from gateway.admin.schema import organization_municipality
from gateway.store.raw import RawExecutor, RawStatement

SELECT_SERVER = RawStatement(
    select(organization_municipality.c.organization_id).where(
        organization_municipality.c.municipality_code == bindparam("code")
    )
)
"""The organisation that serves a municipality, by the register's primary key."""


class RegisterDirectory:
    """``adapters.kela.Directory`` over ``admin_organization_municipality``, read on the
    caller's connection (or driver connection) when asked, one fixed statement per
    municipality. An instance lives for one connection's use (a batch of messages) and
    reads each municipality once."""

    def __init__(self, conn: Connection | RawExecutor) -> None:
        self._db = RawExecutor.of(conn)
        self._areas: dict[str, str | None] = {}

    def wellbeing_area_for_municipality(self, municipality_code: str) -> str | None:
        if municipality_code not in self._areas:
            self._areas[municipality_code] = self._read(municipality_code)
        return self._areas[municipality_code]

    def _read(self, municipality_code: str) -> str | None:
        row = self._db.fetchone(SELECT_SERVER, {"code": municipality_code})
        return None if row is None else str(row[0])
