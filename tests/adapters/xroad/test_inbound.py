"""Idempotent receipt: the same X-Road message id twice gets the same response and
stores nothing new."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, func, select

from adapters.xroad.envelope import XRoadRequest, build_response, parse_request, response_element
from adapters.xroad.inbound import find_response, record_response
from adapters.xroad.schema import inbound
from gateway.store.database import Database
from tests.adapters.xroad.test_envelope import envelope


def receive(db: Database, message: bytes, store: Callable[[Connection], None]) -> bytes:
    """What an inbound handler does: one transaction for the lookup, the content and the
    recorded response."""
    request = parse_request(message)
    with db.write() as conn:
        stored = find_response(conn, request.client, request.message_id)
        if stored is not None:
            return stored
        store(conn)
        response = build_response(request, response_element(request))
        record_response(
            conn,
            client_id=request.client,
            message_id=request.message_id,
            service_code=request.service_code,
            response=response,
        )
    return response


def rows(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(inbound)).scalar_one())


def test_the_same_message_twice_returns_the_same_response(database: Database) -> None:
    stored: list[str] = []
    message = envelope()
    first = receive(database, message, lambda _: stored.append("content"))
    second = receive(database, message, lambda _: stored.append("content"))
    assert first == second
    assert stored == ["content"]
    assert rows(database) == 1


def test_message_ids_are_per_client(database: Database) -> None:
    request = parse_request(envelope())
    with database.write() as conn:
        record_response(
            conn,
            client_id=request.client,
            message_id=request.message_id,
            service_code=request.service_code,
            response=b"<first/>",
        )
    with database.write() as conn:
        assert find_response(conn, "FI/GOV/0246246-0/kela-sub", request.message_id) == b"<first/>"
        assert find_response(conn, "FI/GOV/0246246-0/other", request.message_id) is None
        assert find_response(conn, request.client, "another-id") is None


def test_a_failed_transaction_records_nothing(database: Database) -> None:
    def fail(_: Connection) -> None:
        raise RuntimeError("mapping failed")

    with pytest.raises(RuntimeError):
        receive(database, envelope(), fail)
    assert rows(database) == 0
    assert receive(database, envelope(), lambda _: None)
    assert rows(database) == 1


def test_concurrent_copies_are_processed_once(database: Database) -> None:
    """Two copies arriving at once: the second waits for the first and gets its response
    (PostgreSQL advisory lock; SQLite write transactions are serial)."""
    message = envelope()
    processed: list[XRoadRequest] = []
    barrier = threading.Barrier(4)
    responses: list[bytes] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            responses.append(
                receive(database, message, lambda _: processed.append(parse_request(message)))
            )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(processed) == 1
    assert len(set(responses)) == 1 and len(responses) == 4
    assert rows(database) == 1
