"""The register of X-Road clients: functions and the ``silta admin xroad`` command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from adapters.xroad import members
from adapters.xroad.cli import xroad_app
from adapters.xroad.envelope import parse_request
from adapters.xroad.identifiers import ClientId, ServiceId
from adapters.xroad.schema import member
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from tests.adapters.xroad.test_envelope import envelope
from tests.support import add_organization

KELA = ClientId("FI", "GOV", "0246246-0", "kela-sub")
KELA_URL = "https://ss.kela.example:8443/"


@pytest.fixture
def db(database: Database) -> Database:
    with database.write() as conn:
        add_organization(conn, "kela")
        add_organization(conn, "pirha")
    return database


def test_add_find_and_list(db: Database) -> None:
    with db.write() as conn:
        added = members.add_member(
            conn, client=KELA, organization_id="kela", security_server_url=KELA_URL
        )
        members.add_member(
            conn,
            client=ClientId("FI", "MUN", "3221015-4"),
            organization_id="pirha",
            security_server_url="http://ss.pirha.example/",
            service_provider=ClientId("FI", "MUN", "3221015-4", "asiakastieto"),
        )
    assert added.service_provider == KELA
    with db.read() as conn:
        found = members.find_member(conn, KELA)
        assert found == added
        assert members.organization_of(conn, KELA) == "kela"
        assert members.organization_of(conn, ClientId("FI", "GOV", "0246246-0")) is None
        assert [str(m.client) for m in members.list_members(conn)] == [
            "FI/GOV/0246246-0/kela-sub",
            "FI/MUN/3221015-4",
        ]
        pirha = members.member_of_organization(conn, "pirha")
        assert pirha is not None
        assert pirha.service("NotificationFeedback", "v1") == ServiceId(
            ClientId("FI", "MUN", "3221015-4", "asiakastieto"), "NotificationFeedback", "v1"
        )
        assert members.member_of_organization(conn, "nobody") is None
        stored = conn.execute(select(member.c.subsystem_code)).scalars().all()
        assert sorted(stored, key=str) == [None, "kela-sub"]


def test_lookup_by_a_parsed_client_header(db: Database) -> None:
    with db.write() as conn:
        members.add_member(conn, client=KELA, organization_id="kela", security_server_url=KELA_URL)
    request = parse_request(envelope())
    with db.read() as conn:
        assert members.organization_of(conn, request.client) == "kela"


@pytest.mark.parametrize(
    ("org", "url", "error"),
    [
        ("nobody", KELA_URL, NotFound),
        ("kela", "ftp://ss.kela.example/", Unprocessable),
        ("kela", "not a url", Unprocessable),
    ],
)
def test_refuses_bad_registrations(db: Database, org: str, url: str, error: type) -> None:
    with pytest.raises(error), db.write() as conn:
        members.add_member(conn, client=KELA, organization_id=org, security_server_url=url)


def test_one_registration_per_client_and_removal(db: Database) -> None:
    with db.write() as conn:
        members.add_member(conn, client=KELA, organization_id="kela", security_server_url=KELA_URL)
    with pytest.raises(Conflict), db.write() as conn:
        members.add_member(conn, client=KELA, organization_id="pirha", security_server_url=KELA_URL)
    with db.write() as conn:
        members.remove_member(conn, KELA)
        assert members.find_member(conn, KELA) is None
    with pytest.raises(NotFound), db.write() as conn:
        members.remove_member(conn, KELA)


# -- command line ------------------------------------------------------------------

runner = CliRunner()


def invoke(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(xroad_app, args, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_cli_add_list_remove(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    database = Database(url)
    upgrade(database.engine)
    with database.write() as conn:
        add_organization(conn, "kela")
    database.dispose()

    add = ["member", "add", "--org", "kela", "--client", "FI/GOV/0245437-2/kela-sub"]
    code, output = invoke([*add, "--security-server", KELA_URL, "--database", url])
    assert code == 0, output
    assert "FI/GOV/0245437-2/kela-sub registered for organisation kela" in output

    code, output = invoke(["member", "list", "--database", url])
    assert code == 0, output
    assert "FI/GOV/0245437-2/kela-sub" in output and "SUBSYSTEM" in output

    code, output = invoke([*add, "--security-server", KELA_URL, "--database", url])
    assert code == 1 and "already registered" in output

    code, output = invoke(
        ["member", "add", "--org", "kela", "--client", "FI/GOV", "--security-server", KELA_URL]
    )
    assert code == 2 and "not an X-Road client identifier" in output

    remove = ["member", "remove", "--client", "FI/GOV/0245437-2/kela-sub", "--database", url]
    code, output = invoke(remove)
    assert code == 0, output
    code, output = invoke(["member", "list", "--database", url])
    assert "kela-sub" not in output
