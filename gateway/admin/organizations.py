"""The register of organisations that exchange data through Silta.

Each organisation is also a FHIR Organization (R4 organization.html) whose id is the
organisation id, so Consent actors and other references can name ``Organization/ID``.
Identifier systems follow HL7 Finland's Finnish Base Profiles: business id (Y-tunnus)
``urn:oid:1.2.246.10``, SOTE organisation register ``urn:oid:1.2.246.537.6.202``,
municipality codes ``urn:oid:1.2.246.537.6.21``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from gateway.admin.schema import organization, organization_municipality
from gateway.errors import Conflict, Issue, NotFound, Unprocessable
from gateway.policy import PermitAll
from gateway.services.context import RequestContext
from gateway.services.resources import update_resource
from gateway.store.database import Database
from mappings.municipalities import municipalities
from schemas import load_json

BUSINESS_ID_SYSTEM = "urn:oid:1.2.246.10"
SOTE_ORGANIZATION_SYSTEM = "urn:oid:1.2.246.537.6.202"
MUNICIPALITY_SYSTEM = "urn:oid:1.2.246.537.6.21"
ORGANIZATION_TYPE_CODESYSTEM = "silta/CodeSystem-organization-type.json"

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_BUSINESS_ID = re.compile(r"(\d{7})-(\d)")
_OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")
_BUSINESS_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2)


@dataclass(frozen=True, slots=True)
class Identifier:
    system: str
    value: str


@dataclass(frozen=True, slots=True)
class Organization:
    """One registered organisation."""

    id: str
    name: str
    type: str
    identifiers: tuple[Identifier, ...] = ()
    municipalities: tuple[str, ...] = ()


@dataclass(slots=True)
class _Issues:
    found: list[Issue] = field(default_factory=list)

    def add(self, expression: str, message: str) -> None:
        self.found.append(Issue("error", "invalid", message, (expression,)))

    def raise_if_any(self, what: str) -> None:
        if self.found:
            raise Unprocessable(
                f"The {what} is not valid: {self.found[0].diagnostics}", issues=self.found
            )


def is_fhir_id(value: str) -> bool:
    """R4 datatypes.html#id: 1-64 of A-Z a-z 0-9 - and ."""
    return _FHIR_ID.fullmatch(value) is not None


def business_id_check_digit(digits: str) -> int | None:
    """The check digit of a 7-digit Y-tunnus body, or None when no digit is valid
    (remainder 1). Weights 7, 9, 10, 5, 8, 4, 2; remainder 0 gives 0, else 11 - r."""
    remainder = sum(int(d) * w for d, w in zip(digits, _BUSINESS_ID_WEIGHTS, strict=True)) % 11
    if remainder == 0:
        return 0
    if remainder == 1:
        return None
    return 11 - remainder


def is_valid_business_id(value: str) -> bool:
    """Whether ``value`` is a Y-tunnus ``NNNNNNN-C`` with a correct check digit."""
    match = _BUSINESS_ID.fullmatch(value)
    if match is None:
        return False
    return business_id_check_digit(match.group(1)) == int(match.group(2))


@cache
def organization_types() -> dict[str, str]:
    """Codes and displays of the organisation-type CodeSystem (schemas/silta/)."""
    codesystem = load_json(ORGANIZATION_TYPE_CODESYSTEM)
    return {c["code"]: c["display"] for c in codesystem["concept"]}


def organization_type_system() -> str:
    url: str = load_json(ORGANIZATION_TYPE_CODESYSTEM)["url"]
    return url


def validate_organization(org: Organization) -> None:
    """Raises Unprocessable with one issue per offending field."""
    issues = _Issues()
    if not is_fhir_id(org.id):
        issues.add("id", f"'{org.id}' is not a FHIR id (1-64 of A-Z a-z 0-9 - .)")
    if not org.name.strip():
        issues.add("name", "The name must not be empty")
    if org.type not in organization_types():
        allowed = ", ".join(organization_types())
        issues.add("type", f"'{org.type}' is not an organisation type ({allowed})")
    for i, ident in enumerate(org.identifiers):
        where = f"identifiers[{i}]"
        if not ident.system.strip():
            issues.add(f"{where}.system", "The identifier system must not be empty")
        if not ident.value.strip():
            issues.add(f"{where}.value", "The identifier value must not be empty")
        elif ident.system == BUSINESS_ID_SYSTEM and not is_valid_business_id(ident.value):
            issues.add(f"{where}.value", f"'{ident.value}' is not a valid Y-tunnus")
        elif ident.system == SOTE_ORGANIZATION_SYSTEM and _OID.fullmatch(ident.value) is None:
            issues.add(f"{where}.value", f"'{ident.value}' is not an OID")
    if org.municipalities and org.type != "wellbeing-area":
        issues.add("municipalities", "Only a wellbeing area serves municipalities")
    known = municipalities()
    seen: set[str] = set()
    for i, code in enumerate(org.municipalities):
        if code not in known:
            issues.add(f"municipalities[{i}]", f"'{code}' is not a municipality code")
        elif code in seen:
            issues.add(f"municipalities[{i}]", f"Municipality {code} is listed twice")
        seen.add(code)
    areas = {known[code].area_code for code in org.municipalities if code in known}
    if len(areas) > 1:
        names = ", ".join(sorted(areas))
        issues.add("municipalities", f"The municipalities belong to different areas ({names})")
    issues.raise_if_any("organisation")


def to_fhir(org: Organization) -> dict[str, Any]:
    """The FHIR Organization (R4 organization.html) of a registered organisation."""
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": org.id,
        "active": True,
        "type": [
            {
                "coding": [
                    {
                        "system": organization_type_system(),
                        "code": org.type,
                        "display": organization_types()[org.type],
                    }
                ]
            }
        ],
        "name": org.name,
    }
    if org.identifiers:
        resource["identifier"] = [
            {"use": "official", "system": i.system, "value": i.value} for i in org.identifiers
        ]
    return resource


def create_organization(ctx: RequestContext, *, org: Organization) -> Organization:
    """Registers ``org`` and writes its FHIR Organization (update-as-create with the
    organisation id, R4 http.html §3.1.0.4.2; the organisation is its custodian) in the
    same transaction."""
    validate_organization(org)
    now = time.time_ns() // 1000
    ctx = RequestContext(
        db=ctx.db, settings=ctx.settings, base_url=ctx.base_url, policy=PermitAll(owner=org.id)
    )
    with ctx.write() as conn:
        if _get(conn, org.id) is not None:
            raise Conflict(f"Organisation '{org.id}' already exists", expression=("id",))
        _refuse_served(conn, org.municipalities)
        try:
            conn.execute(
                insert(organization).values(
                    id=org.id,
                    name=org.name,
                    org_type=org.type,
                    identifiers=[{"system": i.system, "value": i.value} for i in org.identifiers],
                    municipalities=list(org.municipalities),
                    created_at=now,
                    updated_at=now,
                )
            )
            if org.municipalities:
                conn.execute(
                    insert(organization_municipality),
                    [
                        {"municipality_code": c, "organization_id": org.id}
                        for c in org.municipalities
                    ],
                )
        except IntegrityError as exc:
            raise Conflict(
                f"Organisation '{org.id}' or one of its municipalities was registered at the "
                "same time by another request; try again"
            ) from exc
        update_resource(
            ctx, resource_type="Organization", resource_id=org.id, resource=to_fhir(org)
        )
    return org


def _refuse_served(conn: Connection, codes: Sequence[str]) -> None:
    """Conflict when another organisation already serves one of ``codes``: the exchange
    routes a client's notification by municipality, so each has one organisation."""
    if not codes:
        return
    rows = conn.execute(
        select(
            organization_municipality.c.municipality_code,
            organization_municipality.c.organization_id,
        ).where(organization_municipality.c.municipality_code.in_(list(codes)))
    )
    served = {code: org_id for code, org_id in rows}
    for i, code in enumerate(codes):
        if code in served:
            raise Conflict(
                f"Municipality {code} is already served by organisation '{served[code]}'",
                expression=(f"municipalities[{i}]",),
            )


def _row_to_org(row: Any) -> Organization:
    return Organization(
        id=row.id,
        name=row.name,
        type=row.org_type,
        identifiers=tuple(Identifier(i["system"], i["value"]) for i in row.identifiers),
        municipalities=tuple(row.municipalities),
    )


def _get(conn: Connection, org_id: str) -> Organization | None:
    row = conn.execute(select(organization).where(organization.c.id == org_id)).first()
    return None if row is None else _row_to_org(row)


def get_organization(db: Database, org_id: str) -> Organization:
    """The organisation ``org_id``; NotFound when it is not registered."""
    with db.read() as conn:
        org = _get(conn, org_id)
    if org is None:
        raise NotFound(f"Organisation '{org_id}' is not registered")
    return org


def list_organizations(db: Database, *, type: str | None = None) -> list[Organization]:
    """Every registered organisation (optionally of one type), ordered by id."""
    query = select(organization).order_by(organization.c.id)
    if type is not None:
        query = query.where(organization.c.org_type == type)
    with db.read() as conn:
        return [_row_to_org(row) for row in conn.execute(query)]


def existing_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are registered organisations."""
    rows = conn.execute(select(organization.c.id).where(organization.c.id.in_(list(ids))))
    return {row.id for row in rows}
