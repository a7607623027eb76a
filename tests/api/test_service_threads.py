"""Service calls on worker threads or on the event loop (gateway.api.fhir.call,
``Settings.service_threads``): both paths give the same answers and the same
all-or-nothing writes, on every backend."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.services import resources as resource_service
from gateway.services.context import RequestContext
from gateway.store.database import Database
from tests.fixtures import load_fixture


@pytest.fixture(params=[True, False], ids=["threads", "event-loop"])
def path_client(
    request: pytest.FixtureRequest, settings: Settings, database: Database
) -> Iterator[TestClient]:
    app = create_app(
        replace(settings, service_threads=request.param), database=database, migrate=False
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_interactions_on_either_path(path_client: TestClient) -> None:
    client = path_client
    patient = load_fixture("patient-virtanen")
    created = client.post("/fhir/Patient", json=patient)
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    assert client.get(f"/fhir/Patient/{patient_id}").json()["id"] == patient_id
    identifier = patient["identifier"][0]
    found = client.get("/fhir/Patient", params={"identifier": identifier["value"]}).json()
    assert found["total"] == 1
    stale = client.put(
        f"/fhir/Patient/{patient_id}",
        json={**created.json(), "active": False},
        headers={"If-Match": 'W/"9"'},
    )
    assert stale.status_code == 412
    bundle = load_fixture("transaction-notification")
    assert client.post("/fhir", json=bundle).status_code == 200
    failing = load_fixture("transaction-notification")
    failing["entry"][-1]["resource"]["status"] = "not-a-status"
    assert client.post("/fhir", json=failing).status_code == 422
    tasks = client.get("/fhir/Task", params={"_summary": "count"}).json()
    assert tasks["total"] == 1  # the failed transaction left nothing behind


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("1", True), ("true", True), ("0", False), ("off", False)],
)
def test_service_threads_setting(
    value: str | None, expected: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("SILTA_SERVICE_THREADS", raising=False)
    else:
        monkeypatch.setenv("SILTA_SERVICE_THREADS", value)
    assert Settings.from_env().service_threads is expected


def test_unset_service_threads_choose_by_database(database: Database) -> None:
    """PostgreSQL's statements are round trips that would stop the event loop."""

    def context(threads: bool | None) -> RequestContext:
        return RequestContext(
            db=database,
            settings=Settings(database_url=database.url, service_threads=threads),
            base_url="http://testserver/fhir",
        )

    assert context(None).services_on_threads is database.is_postgresql
    assert context(True).services_on_threads is True
    assert context(False).services_on_threads is False


def test_calls_on_threads_are_bounded_by_the_connection_pool(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call may hold two connections at once (its transaction and a single-statement
    read), so at most half as many calls as the pool has connections run together:
    calls each waiting for a second connection could otherwise empty the pool."""
    monkeypatch.setattr(database, "max_connections", 4)
    running = 0
    most = 0
    lock = threading.Lock()
    read = resource_service.read_resource

    @functools.wraps(read)
    def slow_read(**kwargs: Any) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return read(**kwargs)

    monkeypatch.setattr(resource_service, "read_resource", slow_read)
    app = create_app(replace(settings, service_threads=True), database=database, migrate=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        patient_id = client.post("/fhir/Patient", json=load_fixture("patient-virtanen")).json()[
            "id"
        ]
        statuses: list[int] = []

        def reader() -> None:
            statuses.append(client.get(f"/fhir/Patient/{patient_id}").status_code)

        readers = [threading.Thread(target=reader) for _ in range(8)]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join()
    assert statuses == [200] * 8
    assert most == 2
