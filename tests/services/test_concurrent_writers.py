"""Writers in parallel database transactions: no lost update, one winner per version
(R4 http.html §3.1.0.5.2), conditional creates that never duplicate, and transaction
Bundles that update the same resources in opposite orders without deadlocking."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from urllib.parse import parse_qsl

import orjson

from gateway.config import Settings
from gateway.errors import Conflict, PreconditionFailed
from gateway.search.query import find_matches
from gateway.services import resources, transactions
from gateway.services.context import RequestContext
from gateway.store.database import Database
from tests.fixtures import load_fixture

WRITERS = 6
ROUNDS = 4


def side_by_side(work: Callable[[int], object]) -> None:
    """Runs ``work(0)`` … ``work(WRITERS - 1)`` on threads of their own and waits for all."""
    threads = [threading.Thread(target=work, args=(index,)) for index in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def transaction(entries: list[dict[str, object]]) -> dict[str, object]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def process_side_by_side(
    database: Database, bundles: Callable[[int], list[dict[str, object]]]
) -> None:
    """Each writer processes its ``bundles(index)`` in turn, all writers starting
    together; none of the Bundles may fail."""
    barrier = threading.Barrier(WRITERS)
    failures: list[BaseException] = []

    def writer(index: int) -> None:
        mine = bundles(index)
        barrier.wait()
        for bundle in mine:
            try:
                transactions.process_bundle(context(database), bundle)
            except Exception as error:  # every failure is reported below
                failures.append(error)

    side_by_side(writer)
    assert failures == []


def context(database: Database) -> RequestContext:
    return RequestContext(
        db=database, settings=Settings(database_url=database.url), base_url="http://x/fhir"
    )


def test_if_match_updates_in_parallel_lose_nothing(database: Database) -> None:
    created = resources.create_resource(
        context(database), resource_type="Task", resource=load_fixture("task-huoli-aijala")
    )
    task_id = created.stored.res_id
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def writer(name: str) -> None:
        ctx = context(database)
        done = 0
        while done < ROUNDS:
            current = resources.read_resource(ctx, resource_type="Task", resource_id=task_id)
            assert current.body is not None
            task = orjson.loads(current.body)
            task["note"] = [*task.get("note", []), {"text": name}]
            try:
                resources.update_resource(
                    ctx,
                    resource_type="Task",
                    resource_id=task_id,
                    resource=task,
                    if_match=f'W/"{current.version}"',
                )
            except (PreconditionFailed, Conflict) as error:
                with lock:
                    outcomes[type(error).__name__] += 1
                continue
            done += 1
            with lock:
                outcomes["ok"] += 1

    side_by_side(lambda index: writer(f"w{index}"))
    final = resources.read_resource(context(database), resource_type="Task", resource_id=task_id)
    assert final.body is not None
    notes = [n["text"] for n in orjson.loads(final.body)["note"]]
    assert Counter(notes) == Counter({f"w{i}": ROUNDS for i in range(WRITERS)})
    assert final.version == 1 + WRITERS * ROUNDS
    assert outcomes["ok"] == WRITERS * ROUNDS


def test_parallel_conditional_creates_make_one_resource(database: Database) -> None:
    patient = load_fixture("patient-virtanen")
    criteria = f"identifier=urn:oid:1.2.246.21|{patient['identifier'][0]['value']}"
    created: list[bool] = []
    barrier = threading.Barrier(WRITERS)

    def creator() -> None:
        barrier.wait()
        result = resources.create_resource(
            context(database),
            resource_type="Patient",
            resource=load_fixture("patient-virtanen"),
            if_none_exist=criteria,
        )
        created.append(result.created)

    side_by_side(lambda _: creator())
    assert sorted(created) == [False] * (WRITERS - 1) + [True]


def test_transactions_updating_the_same_resources_in_any_order_all_succeed(
    database: Database,
) -> None:
    """Half the writers' Bundles update Task A, then B; the other half B, then A. Each
    Bundle locks what it updates before its first write, always in one order, so none
    waits for another in a cycle (on PostgreSQL such a cycle is a deadlock that fails
    one of the transactions)."""
    ctx = context(database)
    ids = []
    for _ in range(2):
        created = resources.create_resource(
            ctx, resource_type="Task", resource=load_fixture("task-huoli-aijala")
        )
        ids.append(created.stored.res_id)

    def put(task_id: str, name: str) -> dict[str, object]:
        task = load_fixture("task-huoli-aijala")
        task["id"] = task_id
        task["note"] = [{"text": name}]
        return {"resource": task, "request": {"method": "PUT", "url": f"Task/{task_id}"}}

    def bundles(index: int) -> list[dict[str, object]]:
        order = ids if index % 2 == 0 else list(reversed(ids))
        return [
            transaction([put(task_id, f"w{index}-{round_}") for task_id in order])
            for round_ in range(ROUNDS)
        ]

    process_side_by_side(database, bundles)
    for task_id in ids:
        final = resources.read_resource(ctx, resource_type="Task", resource_id=task_id)
        assert final.version == 1 + WRITERS * ROUNDS


def test_parallel_transactions_with_conditional_creates_make_one_resource_each(
    database: Database,
) -> None:
    """Every writer's Bundle creates the same two Patients if none exist (half of them
    naming the two in the opposite order) and a Task about the first: one Patient per
    criteria results, and no writer fails (the criteria are locked in one order)."""
    patients = [load_fixture("patient-virtanen"), load_fixture("patient-aijala")]
    criteria = [f"identifier=urn:oid:1.2.246.21|{p['identifier'][0]['value']}" for p in patients]

    def create(index: int) -> dict[str, object]:
        return {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{index}",
            "resource": patients[index],
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria[index]},
        }

    def bundles(index: int) -> list[dict[str, object]]:
        task = load_fixture("task-huoli-aijala")
        task["for"] = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}
        task_entry: dict[str, object] = {
            "resource": task,
            "request": {"method": "POST", "url": "Task"},
        }
        order = [0, 1] if index % 2 == 0 else [1, 0]
        return [transaction([*(create(i) for i in order), task_entry])]

    process_side_by_side(database, bundles)
    with database.read() as conn:
        counts = [
            len(find_matches(conn, "Patient", parse_qsl(condition), limit=10))
            for condition in criteria
        ]
    assert counts == [1, 1]
