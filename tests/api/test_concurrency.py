"""Concurrent writers: no lost update under If-Match (R4 http.html §3.1.0.5.2)."""

from __future__ import annotations

import threading
from collections import Counter

from starlette.testclient import TestClient

from tests.fixtures import load_fixture

WRITERS = 8
ROUNDS = 5


def test_if_match_lets_exactly_one_writer_win_each_version(client: TestClient) -> None:
    created = client.post("/fhir/Task", json=load_fixture("task-huoli-aijala")).json()
    url = f"/fhir/Task/{created['id']}"
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    increments = Counter[str]()

    def writer(name: str) -> None:
        for _ in range(ROUNDS):
            while True:
                current = client.get(url)
                version = current.headers["etag"]
                task = current.json()
                notes = task.get("note", [])
                task["note"] = [*notes, {"text": name}]
                response = client.put(url, json=task, headers={"If-Match": version})
                with lock:
                    statuses[response.status_code] += 1
                if response.status_code == 200:
                    with lock:
                        increments[name] += 1
                    break
                assert response.status_code in (409, 412), response.text

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = client.get(url).json()
    assert len(final["note"]) == WRITERS * ROUNDS  # no update was lost
    assert int(final["meta"]["versionId"]) == 1 + WRITERS * ROUNDS
    assert statuses[200] == WRITERS * ROUNDS
    assert Counter(n["text"] for n in final["note"]) == Counter(
        {f"w{i}": ROUNDS for i in range(WRITERS)}
    )
