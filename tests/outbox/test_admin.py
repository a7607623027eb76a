"""The outbox's admin API (``gateway.outbox.api``) and command line (``silta admin outbox``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gateway.admin.api import require_admin
from gateway.api.app import create_app
from gateway.config import Settings
from gateway.outbox import messages
from gateway.outbox.api import router
from gateway.outbox.cli import outbox_app
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from tests.outbox import queue
from tests.support.fake_security_server import FakeSecurityServer

API = "/admin/api"
DOWN = "http://127.0.0.1:9/"


def dead_message(db: Database) -> int:
    with db.write() as conn:
        [claimed] = messages.claim_due(conn, now=messages.now_micros(), limit=1, lease_until=0)
        messages.mark_failed(conn, claimed.id, error="HTTP 503", retry_at=None)
    return claimed.id


def application(settings: Settings, database: Database) -> Starlette:
    """The gateway's application with the outbox router beside the admin API."""
    app = create_app(settings, database=database, migrate=False)
    app.state.api.include_router(router, prefix=API)
    return app


@pytest.fixture
def api(settings: Settings, database: Database) -> Iterator[TestClient]:
    app = application(settings, database)
    app.state.api.dependency_overrides[require_admin] = lambda: "test-admin"
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_api_lists_shows_and_retries(api: TestClient, database: Database) -> None:
    queue(database, DOWN, 3)
    dead = dead_message(database)

    listed = api.get(f"{API}/outbox")
    assert listed.status_code == 200, listed.text
    assert [m["message_id"] for m in listed.json()] == [
        "feedback-0002",
        "feedback-0001",
        "feedback-0000",
    ]
    assert "payload" not in listed.json()[0]
    only_dead = api.get(f"{API}/outbox", params={"status": "dead"}).json()
    assert [(m["id"], m["last_error"], m["next_attempt"]) for m in only_dead] == [
        (dead, "HTTP 503", None)
    ]
    assert api.get(f"{API}/outbox", params={"status": "lost"}).status_code == 400
    assert api.get(f"{API}/outbox", params={"organization": "pirha"}).json() == []

    shown = api.get(f"{API}/outbox/{dead}")
    assert shown.status_code == 200
    body = shown.json()
    assert body["organization"] == "kela" and body["status"] == "dead"
    assert "<xrd:id>feedback-0000</xrd:id>" in body["payload"]
    missing = api.get(f"{API}/outbox/999999")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"

    retried = api.post(f"{API}/outbox/{dead}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
    assert retried.json()["next_attempt"] is not None


def test_api_needs_the_admin(settings: Settings, database: Database) -> None:
    with TestClient(application(settings, database), raise_server_exceptions=False) as client:
        assert client.get(f"{API}/outbox").status_code == 401
        assert client.post(f"{API}/outbox/1/retry").status_code == 401


def test_api_refuses_to_resend_a_delivered_message(api: TestClient, database: Database) -> None:
    queue(database, DOWN)
    with database.write() as conn:
        [claimed] = messages.claim_due(conn, now=messages.now_micros(), limit=1, lease_until=0)
        messages.mark_delivered(conn, claimed.id, now=1)
    assert api.post(f"{API}/outbox/{claimed.id}/retry").status_code == 409


runner = CliRunner()


def run(args: list[str]) -> str:
    result = runner.invoke(outbox_app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_list_show_retry_drain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    db = Database(url)
    upgrade(db.engine)
    with FakeSecurityServer() as server:
        queue(db, server.url, 2)
        dead = dead_message(db)
        db.dispose()

        listed = run(["list", "--database", url])
        assert "feedback-0000" in listed and "HTTP 503" in listed
        assert "pending: 1, delivered: 0, dead: 1" in listed
        assert "feedback-0000" not in run(["list", "--status", "pending", "--database", url])

        shown = run(["show", str(dead), "--database", url])
        assert "status:       dead" in shown
        assert "<xrd:id>feedback-0000</xrd:id>" in shown

        assert "is due now" in run(["retry", str(dead), "--database", url])
        assert "delivered 2, to retry 0, dead 0" in run(["drain", "--database", url])
        assert sorted(server.delivered_ids()) == ["feedback-0000", "feedback-0001"]

    failed = runner.invoke(outbox_app, ["show", "424242", "--database", url])
    assert failed.exit_code == 1 and "no outbox message 424242" in failed.output
    retry_delivered = runner.invoke(outbox_app, ["retry", str(dead), "--database", url])
    assert retry_delivered.exit_code == 1 and "already delivered" in retry_delivered.output
