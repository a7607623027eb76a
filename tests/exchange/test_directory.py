"""The admin register as the Kela adapter's directory of municipalities."""

from __future__ import annotations

import pytest

from gateway.admin import organizations as orgs
from gateway.config import Settings
from gateway.exchange.directory import RegisterDirectory
from gateway.services.context import RequestContext
from gateway.store.database import Database


def _register(database: Database, *registered: orgs.Organization) -> None:
    ctx = RequestContext(
        db=database, settings=Settings(database_url=database.url), base_url="http://t/fhir"
    )
    for org in registered:
        orgs.create_organization(ctx, org=org)


def test_a_municipality_is_served_by_the_wellbeing_area_that_lists_it(database: Database) -> None:
    _register(
        database,
        orgs.Organization(
            "pirha", "Pirkanmaan hyvinvointialue", "wellbeing-area", municipalities=("837", "211")
        ),
        orgs.Organization(
            "helsinki", "Helsingin kaupunki", "wellbeing-area", municipalities=("091",)
        ),
    )
    with database.read() as conn:
        directory = RegisterDirectory(conn)
        assert directory.wellbeing_area_for_municipality("837") == "pirha"
        assert directory.wellbeing_area_for_municipality("211") == "pirha"
        assert directory.wellbeing_area_for_municipality("091") == "helsinki"
        assert directory.wellbeing_area_for_municipality("999") is None
        # Only a whole code matches: neither a part of one nor a pattern.
        for pattern in ("83", "8_7", "%", '837", "211'):
            assert directory.wellbeing_area_for_municipality(pattern) is None


def test_an_empty_register_serves_no_municipality(database: Database) -> None:
    with database.read() as conn:
        assert RegisterDirectory(conn).wellbeing_area_for_municipality("837") is None


def test_a_directory_reads_each_municipality_once(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(
        database,
        orgs.Organization(
            "pirha", "Pirkanmaan hyvinvointialue", "wellbeing-area", municipalities=("837",)
        ),
    )
    reads: list[str] = []
    read = RegisterDirectory._read

    def counted(directory: RegisterDirectory, code: str) -> str | None:
        reads.append(code)
        return read(directory, code)

    monkeypatch.setattr(RegisterDirectory, "_read", counted)
    with database.read() as conn:
        directory = RegisterDirectory(conn)
        answers = [directory.wellbeing_area_for_municipality(c) for c in ("837", "999", "837")]
        assert answers == ["pirha", None, "pirha"]
        assert directory.wellbeing_area_for_municipality("999") is None
        assert reads == ["837", "999"]
        # A new directory (the next batch of messages) reads the register again.
        assert RegisterDirectory(conn).wellbeing_area_for_municipality("837") == "pirha"
        assert reads == ["837", "999", "837"]
