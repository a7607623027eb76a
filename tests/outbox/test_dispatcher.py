"""Delivery of the outbox to a fake X-Road security server: retries with backoff, the
dead letter, restarts, a long outage and concurrent dispatchers."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from gateway.outbox import messages
from gateway.outbox.dispatcher import Dispatcher, DispatchResult
from gateway.outbox.settings import OutboxSettings
from gateway.store.database import Database
from tests.outbox import FakeClock, feedback, queue, statuses
from tests.support.fake_security_server import Failure, FakeSecurityServer

SETTINGS = OutboxSettings(
    max_attempts=4,
    backoff_base_seconds=10,
    backoff_cap_seconds=25,
    backoff_jitter=0,
    http_timeout_seconds=5,
    poll_seconds=0.01,
    batch_size=10,
)


@pytest.fixture
def server() -> Iterator[FakeSecurityServer]:
    with FakeSecurityServer() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def dispatcher(db: Database, clock: FakeClock, settings: OutboxSettings = SETTINGS) -> Dispatcher:
    return Dispatcher(db, settings, clock=clock, random_fraction=random.Random(7).random)


def message(db: Database, message_id: str) -> messages.OutboxMessage:
    with db.read() as conn:
        found = messages.find_message(conn, message_id)
    assert found is not None
    return found


def test_delivers_the_envelope_as_soap_11_over_http(
    database: Database, server: FakeSecurityServer, clock: FakeClock
) -> None:
    [message_id] = queue(database, server.url, now=clock.micros)
    result = dispatcher(database, clock).run_once()
    assert result == DispatchResult(delivered=1)
    [received] = server.requests
    assert received.body == feedback(message_id)
    assert received.headers["content-type"] == "text/xml; charset=utf-8"
    assert received.headers["soapaction"] == '""'
    assert received.message_id == message_id
    delivered = message(database, message_id)
    assert (delivered.status, delivered.attempts, delivered.delivered_at) == (
        "delivered",
        1,
        clock.micros,
    )
    assert dispatcher(database, clock).run_once() == DispatchResult()


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Failure.HTTP_500, "HTTP 500: security server unavailable"),
        (
            Failure.SOAP_FAULT,
            "HTTP 500, SOAP Fault SOAP-ENV:Server: Service temporarily unavailable",
        ),
        (Failure.SOAP_FAULT_HTTP_200, "HTTP 200, SOAP Fault SOAP-ENV:Server"),
    ],
)
def test_retries_with_exponential_backoff(
    database: Database,
    server: FakeSecurityServer,
    clock: FakeClock,
    failure: Failure,
    error: str,
) -> None:
    [message_id] = queue(database, server.url, now=clock.micros)
    server.fail_next(2, failure)
    outbox = dispatcher(database, clock)

    assert outbox.run_once() == DispatchResult(retrying=1)
    failed = message(database, message_id)
    assert failed.status == "pending" and failed.attempts == 1
    assert failed.last_error is not None and error in failed.last_error
    assert failed.next_attempt_at == clock.micros + 10_000_000

    clock.advance(9.9)
    assert outbox.run_once() == DispatchResult()  # not due yet
    clock.advance(0.1)
    assert outbox.run_once() == DispatchResult(retrying=1)
    assert message(database, message_id).next_attempt_at == clock.micros + 20_000_000

    clock.advance(20)
    assert outbox.run_once() == DispatchResult(delivered=1)
    done = message(database, message_id)
    assert (done.status, done.attempts, done.last_error) == ("delivered", 3, None)
    assert len(server.requests) == 3 and server.delivered_ids() == [message_id]


def test_backoff_is_capped_and_jittered() -> None:
    settings = OutboxSettings(backoff_base_seconds=5, backoff_cap_seconds=900, backoff_jitter=0.5)
    assert [settings.backoff_seconds(n, 0.0) for n in (1, 2, 3, 8, 9, 60)] == [
        5,
        10,
        20,
        640,
        900,
        900,
    ]
    assert settings.backoff_seconds(3, 0.5) == 15
    assert settings.backoff_seconds(3, 0.999) > 10


def test_dead_after_max_attempts_then_retried_by_an_admin(
    database: Database, server: FakeSecurityServer, clock: FakeClock
) -> None:
    [message_id] = queue(database, server.url, now=clock.micros)
    server.fail_always()
    outbox = dispatcher(database, clock)
    results = DispatchResult()
    for _ in range(10):
        results += outbox.run_once()
        clock.advance(30)
    assert results == DispatchResult(retrying=3, dead=1)
    dead = message(database, message_id)
    assert (dead.status, dead.attempts) == ("dead", 4)
    assert len(server.requests) == 4

    server.recover()
    with database.write() as conn:
        messages.retry(conn, dead.id, now=clock.micros)
    assert outbox.run_once() == DispatchResult(delivered=1)
    assert (message(database, message_id).status, message(database, message_id).attempts) == (
        "delivered",
        1,
    )
    assert server.delivered_ids() == [message_id]


def test_a_new_dispatcher_over_the_same_database_delivers_what_is_pending(
    database: Database, server: FakeSecurityServer, clock: FakeClock
) -> None:
    ids = queue(database, server.url, 3, now=clock.micros)
    server.stop()
    first = dispatcher(database, clock)
    assert first.run_once() == DispatchResult(retrying=3)
    first.close()
    # A dispatcher that died after claiming, before sending: the lease runs out.
    with database.write() as conn:
        queue_more = messages.enqueue(
            conn,
            message_id="claimed-then-crashed",
            organization_id="kela",
            url=server.url,
            service_code="NotificationFeedback",
            payload=feedback("claimed-then-crashed"),
            now=clock.micros,
        )
        assert queue_more
        lease = int(SETTINGS.lease_seconds * 1_000_000)
        messages.claim_due(conn, now=clock.micros, limit=10, lease_until=clock.micros + lease)
    database.dispose()

    server.start()
    restarted_db = Database(database.url)
    try:
        restarted = dispatcher(restarted_db, clock)
        clock.advance(10)
        assert restarted.run_once() == DispatchResult(delivered=3)
        clock.advance(SETTINGS.lease_seconds)
        assert restarted.run_once() == DispatchResult(delivered=1)
        restarted.close()
    finally:
        restarted_db.dispose()
    assert sorted(server.delivered_ids()) == sorted([*ids, "claimed-then-crashed"])


def test_a_counterpart_down_for_an_hour_gets_everything_once(
    database: Database, server: FakeSecurityServer, clock: FakeClock
) -> None:
    settings = OutboxSettings(
        backoff_base_seconds=5, backoff_cap_seconds=900, backoff_jitter=0.5, batch_size=7
    )
    ids = queue(database, server.url, 25, now=clock.micros)
    server.stop()
    outbox = dispatcher(database, clock, settings)
    for _ in range(60):  # one simulated hour, a round every minute
        outbox.drain()
        clock.advance(60)
    assert statuses(database) == {"pending": 25}
    assert server.requests == []

    server.start()
    for _ in range(20):  # the waits are at most 15 minutes
        outbox.drain()
        clock.advance(60)
    outbox.close()
    assert statuses(database) == {"delivered": 25}
    assert sorted(server.delivered_ids()) == ids
    assert server.duplicate_deliveries() == {}


def test_the_background_thread_delivers_and_stops(
    database: Database, server: FakeSecurityServer
) -> None:
    outbox = Dispatcher(database, SETTINGS)
    with outbox:
        ids = queue(database, server.url, 5)
        assert server.wait_for_deliveries(5)
    assert sorted(server.delivered_ids()) == ids
    assert statuses(database) == {"delivered": 5}


def test_concurrent_dispatchers_do_not_send_twice(database: Database) -> None:
    # Failed messages are due again at once, so the dispatchers race for them too.
    settings = OutboxSettings(batch_size=3, backoff_base_seconds=0, poll_seconds=0.01)
    with FakeSecurityServer(response_delay=0.005) as server:
        ids = queue(database, server.url, 30)
        server.fail_next(5)  # some messages need a second round
        dispatchers = [Dispatcher(database, settings) for _ in range(3)]
        barrier = threading.Barrier(len(dispatchers))
        errors: list[BaseException] = []

        def work(outbox: Dispatcher) -> None:
            try:
                barrier.wait()
                outbox.drain()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for outbox in dispatchers:
            outbox.close()
    assert errors == []
    attempts = [r.message_id for r in server.requests]
    assert len(attempts) == 35
    assert sorted(server.delivered_ids()) == ids
    assert server.duplicate_deliveries() == {}
    assert statuses(database) == {"delivered": 30}
