"""The admin register as the Kela adapter's directory: which registered organisation
serves a municipality (the wellbeing area, or the City of Helsinki)."""

from __future__ import annotations

from sqlalchemy import Connection, Text, bindparam, cast, select

from gateway.admin.schema import organization
from gateway.store.raw import RawExecutor, RawStatement, json_column

SELECT_LISTING = RawStatement(
    select(organization.c.id, organization.c.municipalities)
    .where(cast(organization.c.municipalities, Text).like(bindparam("listed"), escape="\\"))
    .order_by(organization.c.id)
)
"""The organisations whose JSON list of municipalities has the code's text in it: the
database skips every other row without decoding its list."""


class RegisterDirectory:
    """``adapters.kela.Directory`` over ``admin_organization.municipalities``, read on the
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
        # Only wellbeing areas (and the City of Helsinki) list municipalities.
        listed = '%"' + _like_escaped(municipality_code) + '"%'
        for org_id, municipalities in self._db.fetchall(SELECT_LISTING, {"listed": listed}):
            if municipality_code in (json_column(municipalities) or ()):
                return str(org_id)
        return None


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
