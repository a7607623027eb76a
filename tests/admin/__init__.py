"""Tests of the admin register: organisations, agreements, the admin API and CLI."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import delete

from gateway.admin import agreements as svc
from gateway.admin import organizations as orgs
from gateway.admin.schema import (
    agreement,
    agreement_event,
    organization,
    organization_municipality,
)
from gateway.config import Settings
from gateway.services.context import RequestContext
from gateway.store.database import Database
from mappings.municipalities import municipalities_of_area

KELA_BUSINESS_ID = "0246246-0"
PIRHA_BUSINESS_ID = "3221308-6"
TODAY = date.today()
START = TODAY - timedelta(days=365)


def days(n: int) -> date:
    """The date ``n`` days from today (lifecycle checks run against today's date)."""
    return TODAY + timedelta(days=n)


def clean_admin_tables(db: Database) -> None:
    """Empties the admin tables (the shared PostgreSQL test database keeps rows between
    tests; conftest only truncates the resource store)."""
    with db.write() as conn:
        for table in (agreement_event, agreement, organization_municipality, organization):
            conn.execute(delete(table))


def context(db: Database) -> RequestContext:
    settings = Settings(database_url=db.url, public_base_url="http://testserver/fhir")
    return RequestContext(db=db, settings=settings, base_url="http://testserver/fhir")


def register_parties(db: Database) -> None:
    """Kela and Pirkanmaa wellbeing area, plus an outreach youth work unit."""
    ctx = context(db)
    orgs.create_organization(
        ctx,
        org=orgs.Organization(
            "kela",
            "Kansaneläkelaitos",
            "kela",
            (orgs.Identifier(orgs.BUSINESS_ID_SYSTEM, KELA_BUSINESS_ID),),
        ),
    )
    orgs.create_organization(
        ctx,
        org=orgs.Organization(
            "pirha",
            "Pirkanmaan hyvinvointialue",
            "wellbeing-area",
            (orgs.Identifier(orgs.BUSINESS_ID_SYSTEM, PIRHA_BUSINESS_ID),),
            municipalities=tuple(municipalities_of_area("08")),
        ),
    )
    orgs.create_organization(
        ctx, org=orgs.Organization("etsiva-tampere", "Etsivä nuorisotyö", "youth-outreach")
    )


def terms(**overrides: object) -> svc.AgreementTerms:
    """Kela → Pirkanmaa: notifications of need for social services (SHL 35 §)."""
    values: dict[str, object] = {
        "provider": "kela",
        "recipient": "pirha",
        "categories": (svc.Category("ServiceRequest"), svc.Category("Task")),
        "purposes": ("concern-notification",),
        "legal_basis": svc.LegalBasis("1301/2014 §35", "Notification of need for social services"),
        "consent_required": False,
        "write_allowed": True,
        "valid_from": START,
        "valid_until": None,
    }
    values.update(overrides)
    return svc.AgreementTerms(**values)  # type: ignore[arg-type]
