"""The admin command line: ``org_app`` and ``agreement_app`` (typer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.admin.cli import agreement_app, org_app
from tests.admin import KELA_BUSINESS_ID

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'admin.db'}"


def ok(app: object, args: list[str]) -> str:
    result = runner.invoke(app, args)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.stdout


def add_orgs(url: str) -> None:
    ok(
        org_app,
        [
            "add",
            "--id",
            "kela",
            "--name",
            "Kansaneläkelaitos",
            "--type",
            "kela",
            "--identifier",
            f"urn:oid:1.2.246.10|{KELA_BUSINESS_ID}",
            "--database",
            url,
        ],
    )
    ok(
        org_app,
        [
            "add",
            "--id",
            "esavo",
            "--name",
            "Etelä-Savon hyvinvointialue",
            "--type",
            "wellbeing-area",
            "--municipality",
            "507",
            "--municipality",
            "491",
            "--database",
            url,
        ],
    )


def test_org_add_and_list(url: str) -> None:
    add_orgs(url)
    listed = ok(org_app, ["list", "--database", url])
    assert "kela" in listed and "esavo" in listed and "507 491" in listed


def test_org_add_refuses_an_invalid_business_id(url: str) -> None:
    result = runner.invoke(
        org_app,
        [
            "add",
            "--id",
            "kela",
            "--name",
            "Kela",
            "--type",
            "kela",
            "--identifier",
            "urn:oid:1.2.246.10|0246246-1",
            "--database",
            url,
        ],
    )
    assert result.exit_code == 1
    assert "identifiers[0].value" in result.stderr
    assert "kela" not in ok(org_app, ["list", "--database", url])


def test_agreement_add_approve_twice_show(url: str) -> None:
    add_orgs(url)
    agreement_id = ok(
        agreement_app,
        [
            "add",
            "--provider",
            "kela",
            "--recipient",
            "esavo",
            "--resource-type",
            "ServiceRequest",
            "--resource-type",
            "Task",
            "--purpose",
            "concern-notification",
            "--consent-required",
            "--legal-basis",
            "1301/2014 §35",
            "--valid-until",
            "2099-12-31",
            "--database",
            url,
        ],
    ).strip()
    assert len(agreement_id) == 36
    first = ok(agreement_app, ["approve", agreement_id, "--as", "kela", "--database", url])
    assert "proposed" in first
    second = ok(agreement_app, ["approve", agreement_id, "--as", "esavo", "--database", url])
    assert "active" in second
    shown = ok(agreement_app, ["show", agreement_id, "--database", url])
    assert "status:           active" in shown
    assert "ServiceRequest, Task" in shown
    assert "consent required: yes" in shown
    assert "2099-12-31" in shown
    assert "approve" in shown and "create" in shown
    listed = ok(agreement_app, ["list", "--database", url])
    assert "active" in listed
    assert "suspended" in ok(agreement_app, ["suspend", agreement_id, "--database", url])
    assert "terminated" in ok(agreement_app, ["terminate", agreement_id, "--database", url])
    again = runner.invoke(agreement_app, ["suspend", agreement_id, "--database", url])
    assert again.exit_code == 1 and "terminated" in again.stderr


def test_agreement_add_reports_every_bad_field(url: str) -> None:
    add_orgs(url)
    result = runner.invoke(
        agreement_app,
        [
            "add",
            "--provider",
            "kela",
            "--recipient",
            "esavo",
            "--resource-type",
            "Consent",
            "--category",
            "no-system",
            "--purpose",
            "gossip",
            "--legal-basis",
            "1301/2014 §41",
            "--database",
            url,
        ],
    )
    assert result.exit_code == 1
    assert "categories[0].category" in result.stderr and "purposes[0]" in result.stderr
    assert "kela" not in ok(agreement_app, ["list", "--database", url])


def test_bad_date_is_a_usage_error(url: str) -> None:
    result = runner.invoke(
        agreement_app,
        [
            "add",
            "--provider",
            "kela",
            "--recipient",
            "esavo",
            "--resource-type",
            "Task",
            "--purpose",
            "care-coordination",
            "--legal-basis",
            "x",
            "--valid-until",
            "31.12.2026",
            "--database",
            url,
        ],
    )
    assert result.exit_code == 2
