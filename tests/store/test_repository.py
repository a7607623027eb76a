"""The store's fixed lookups by one token or one reference."""

from __future__ import annotations

from gateway.config import Settings
from gateway.services import resources
from gateway.services.context import RequestContext
from gateway.store import repository
from gateway.store.database import Database
from tests.fixtures import load_fixture

HETU_SYSTEM = "urn:oid:1.2.246.21"


def _context(database: Database) -> RequestContext:
    return RequestContext(
        db=database, settings=Settings(database_url=database.url), base_url="http://x/fhir"
    )


def test_find_by_token_and_by_reference_skip_deleted_and_keep_order(database: Database) -> None:
    ctx = _context(database)
    patient = load_fixture("patient-aijala")
    resources.update_resource(
        ctx, resource_type="Patient", resource_id="patient-aijala", resource=patient
    )
    task_ids = []
    for _ in range(3):
        created = resources.create_resource(
            ctx, resource_type="Task", resource=load_fixture("task-huoli-aijala")
        )
        task_ids.append(created.stored.res_id)
    resources.delete_resource(ctx, resource_type="Task", resource_id=task_ids[1])

    with database.read_raw() as db:
        found = repository.find_by_token(
            db, "Patient", "identifier", HETU_SYSTEM, "150388-921H", limit=5
        )
        other = repository.find_by_token(
            db, "Patient", "identifier", HETU_SYSTEM, "010101-123N", limit=5
        )
        tasks = repository.find_by_reference(
            db, "Task", "patient", "Patient/patient-aijala", limit=5
        )
        first = repository.find_by_reference(
            db, "Task", "patient", "Patient/patient-aijala", limit=1
        )
    assert [p.res_id for p in found] == ["patient-aijala"]
    assert other == []
    assert [t.res_id for t in tasks] == [task_ids[0], task_ids[2]]
    assert [t.res_id for t in first] == [task_ids[0]]
    assert all(t.body is not None and not t.deleted for t in tasks)
