"""Organisations: Y-tunnus check digits, types, wellbeing-area municipalities and the
FHIR Organization each one is exposed as (R4 organization.html)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from gateway.admin import organizations as orgs
from gateway.admin.schema import organization, organization_municipality
from gateway.api.app import create_app
from gateway.config import Settings
from gateway.errors import Conflict, Unprocessable
from gateway.store.database import Database
from mappings.municipalities import municipalities, municipalities_of_area
from tests.admin import KELA_BUSINESS_ID, clean_admin_tables, context, register_parties


@pytest.fixture
def db(database: Database) -> Database:
    clean_admin_tables(database)
    return database


@pytest.mark.parametrize(
    "value", [KELA_BUSINESS_ID, "0201256-6", "1000000-4", "0000001-9", "0000000-0"]
)
def test_valid_business_ids(value: str) -> None:
    assert orgs.is_valid_business_id(value)


@pytest.mark.parametrize(
    "value", ["0246246-1", "0201256-5", "0246246", "246246-0", "0246246-00", "a246246-0"]
)
def test_invalid_business_ids(value: str) -> None:
    assert not orgs.is_valid_business_id(value)


def test_remainder_one_has_no_valid_check_digit() -> None:
    assert orgs.business_id_check_digit("0000006") is None  # 6 x 2 = 12, 12 mod 11 = 1
    assert not any(orgs.is_valid_business_id(f"0000006-{d}") for d in range(10))
    assert orgs.business_id_check_digit("0246246") == 0


def test_organization_types_come_from_the_codesystem() -> None:
    assert list(orgs.organization_types()) == [
        "kela",
        "wellbeing-area",
        "healthcare",
        "municipality",
        "youth-outreach",
        "other",
    ]
    assert orgs.organization_type_system().endswith("/CodeSystem/organization-type")


def test_municipalities_of_wellbeing_areas() -> None:
    etela_savo = municipalities_of_area("12")
    assert "507" in etela_savo and "588" in etela_savo  # Mäntyharju; Pertunmaa until 2025
    assert len(etela_savo) == 12
    assert municipalities_of_area("90") == ["091"]  # the City of Helsinki
    assert municipalities()["837"].area_name == "Pirkanmaan hyvinvointialue"
    assert municipalities_of_area("99") == []
    assert sum(len(municipalities_of_area(f"{n:02d}")) for n in range(1, 22)) + 1 + 16 == 309


def test_create_organization_exposes_a_fhir_organization(db: Database, settings: Settings) -> None:
    register_parties(db)
    assert [o.id for o in orgs.list_organizations(db)] == ["etsiva-tampere", "kela", "pirha"]
    assert orgs.get_organization(db, "pirha").municipalities == tuple(municipalities_of_area("08"))
    assert [o.id for o in orgs.list_organizations(db, type="kela")] == ["kela"]
    app = create_app(settings, database=db, migrate=False)
    with TestClient(app) as client:
        response = client.get("/fhir/Organization/kela")
        assert response.status_code == 200
        body = response.json()
        assert body["name"] == "Kansaneläkelaitos"
        assert body["identifier"] == [
            {"use": "official", "system": "urn:oid:1.2.246.10", "value": KELA_BUSINESS_ID}
        ]
        assert body["type"][0]["coding"][0]["code"] == "kela"
        found = client.get(
            "/fhir/Organization", params={"identifier": f"urn:oid:1.2.246.10|{KELA_BUSINESS_ID}"}
        )
        assert [e["resource"]["id"] for e in found.json()["entry"]] == ["kela"]


def test_duplicate_id_is_a_conflict(db: Database) -> None:
    register_parties(db)
    with pytest.raises(Conflict):
        orgs.create_organization(context(db), org=orgs.Organization("kela", "Kela", "kela"))


def test_invalid_organization_names_every_field_and_changes_nothing(db: Database) -> None:
    bad = orgs.Organization(
        "not an id!",
        " ",
        "ministry",
        (
            orgs.Identifier(orgs.BUSINESS_ID_SYSTEM, "0246246-1"),
            orgs.Identifier(orgs.SOTE_ORGANIZATION_SYSTEM, "1.2.246.x"),
        ),
        ("091", "999"),
    )
    with pytest.raises(Unprocessable) as raised:
        orgs.create_organization(context(db), org=bad)
    expressions = [i.expression[0] for i in raised.value.issues]
    assert expressions == [
        "id",
        "name",
        "type",
        "identifiers[0].value",
        "identifiers[1].value",
        "municipalities",
        "municipalities[1]",
    ]
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(organization)).scalar_one() == 0


def test_wellbeing_area_municipalities_must_be_known_and_unique(db: Database) -> None:
    area = orgs.Organization("esavo", "Etelä-Savo", "wellbeing-area", (), ("507", "507", "5O7"))
    with pytest.raises(Unprocessable) as raised:
        orgs.create_organization(context(db), org=area)
    assert [i.expression[0] for i in raised.value.issues] == [
        "municipalities[1]",
        "municipalities[2]",
    ]


def test_wellbeing_area_municipalities_belong_to_one_area(db: Database) -> None:
    mixed = orgs.Organization("pirha", "Pirkanmaa", "wellbeing-area", (), ("837", "091"))
    with pytest.raises(Unprocessable) as raised:
        orgs.create_organization(context(db), org=mixed)
    assert raised.value.issues[0].expression == ("municipalities",)
    assert "08, 90" in raised.value.issues[0].diagnostics


def test_a_municipality_is_served_by_one_organisation(db: Database) -> None:
    ctx = context(db)
    orgs.create_organization(
        ctx, org=orgs.Organization("pirha", "Pirkanmaa", "wellbeing-area", (), ("837", "211"))
    )
    rival = orgs.Organization("pirha-2", "Pirkanmaa again", "wellbeing-area", (), ("536", "211"))
    with pytest.raises(Conflict) as raised:
        orgs.create_organization(ctx, org=rival)
    assert raised.value.diagnostics == "Municipality 211 is already served by organisation 'pirha'"
    assert raised.value.expression == ("municipalities[1]",)
    with db.read() as conn:
        assert [o.id for o in orgs.list_organizations(db)] == ["pirha"]
        served = conn.execute(
            select(
                organization_municipality.c.municipality_code,
                organization_municipality.c.organization_id,
            ).order_by(organization_municipality.c.municipality_code)
        ).all()
    assert [tuple(row) for row in served] == [("211", "pirha"), ("837", "pirha")]
