"""The outbox table: written in the caller's transaction, claimed, retried."""

from __future__ import annotations

import pytest

from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.outbox import messages
from gateway.store.database import Database
from tests.outbox import feedback, queue, statuses
from tests.support import add_organization

URL = "http://127.0.0.1:9/"


def test_enqueue_commits_with_the_callers_transaction(database: Database) -> None:
    with database.write() as conn:
        add_organization(conn, "kela")
    with pytest.raises(RuntimeError), database.write() as conn:
        messages.enqueue(
            conn,
            message_id="lost",
            organization_id="kela",
            url=URL,
            service_code="NotificationFeedback",
            payload=feedback("lost"),
        )
        raise RuntimeError("the change that caused it failed")
    assert statuses(database) == {}
    queue(database, URL, 2)
    with database.read() as conn:
        listed = messages.list_messages(conn)
    assert [m.message_id for m in listed] == ["feedback-0001", "feedback-0000"]
    first = listed[1]
    assert (first.status, first.attempts, first.last_error, first.delivered_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert first.payload == feedback("feedback-0000")
    assert first.next_attempt_at == first.created_at


def test_the_same_message_id_is_queued_once(database: Database) -> None:
    queue(database, URL)
    with database.write() as conn:
        again = messages.enqueue(
            conn,
            message_id="feedback-0000",
            organization_id="kela",
            url=URL,
            service_code="NotificationFeedback",
            payload=b"<other/>",
        )
    assert again is False
    with database.read() as conn:
        found = messages.find_message(conn, "feedback-0000")
        assert found is not None and found.payload == feedback("feedback-0000")
        assert messages.count_by_status(conn) == {"pending": 1, "delivered": 0, "dead": 0}


def test_list_filters_and_lookups(database: Database) -> None:
    queue(database, URL, 3)
    with database.write() as conn:
        add_organization(conn, "pirha")
        messages.enqueue(
            conn,
            message_id="decision-1",
            organization_id="pirha",
            url=URL,
            service_code="MunicipalAssistanceDecision",
            payload=b"<x/>",
        )
    with database.read() as conn:
        assert len(messages.list_messages(conn, organization_id="kela")) == 3
        assert len(messages.list_messages(conn, status="pending", limit=2)) == 2
        assert messages.list_messages(conn, status="dead") == []
        with pytest.raises(Unprocessable):
            messages.list_messages(conn, status="lost")
        with pytest.raises(NotFound):
            messages.get_message(conn, 999_999)
        assert messages.find_message(conn, "nothing") is None


def test_claims_only_due_messages_and_leases_them(database: Database) -> None:
    queue(database, URL, 3, now=1_000)
    with database.write() as conn:
        assert not messages.any_due(conn, now=999)
        assert messages.any_due(conn, now=1_000)
        assert messages.claim_due(conn, now=999, limit=10, lease_until=5_000) == []
        claimed = messages.claim_due(conn, now=1_000, limit=2, lease_until=5_000)
    assert [m.message_id for m in claimed] == ["feedback-0000", "feedback-0001"]
    assert all(m.attempts == 1 and m.next_attempt_at == 5_000 for m in claimed)
    with database.write() as conn:
        rest = messages.claim_due(conn, now=1_000, limit=10, lease_until=5_000)
        assert [m.message_id for m in rest] == ["feedback-0002"]
        assert messages.claim_due(conn, now=4_999, limit=10, lease_until=9_000) == []
        messages.release(conn, [m.id for m in rest], now=2_000)
        released = messages.get_message(conn, rest[0].id)
        assert (released.attempts, released.next_attempt_at) == (0, 2_000)
        # A lease that ran out (its dispatcher died) makes the message due again.
        again = messages.claim_due(conn, now=5_000, limit=10, lease_until=9_000)
        assert {m.message_id for m in again} == {"feedback-0000", "feedback-0001", "feedback-0002"}


def test_outcomes_and_retry(database: Database) -> None:
    queue(database, URL, 2, now=1_000)
    with database.write() as conn:
        first, second = messages.claim_due(conn, now=1_000, limit=10, lease_until=5_000)
        messages.mark_delivered(conn, first.id, now=1_500)
        messages.mark_failed(conn, second.id, error="HTTP 500", retry_at=None)
    with database.read() as conn:
        delivered = messages.get_message(conn, first.id)
        dead = messages.get_message(conn, second.id)
    assert (delivered.status, delivered.delivered_at) == ("delivered", 1_500)
    assert (dead.status, dead.last_error, dead.attempts) == ("dead", "HTTP 500", 1)
    with database.write() as conn:
        with pytest.raises(Conflict):
            messages.retry(conn, first.id)
        retried = messages.retry(conn, second.id, now=7_000)
    assert (retried.status, retried.attempts, retried.next_attempt_at) == ("pending", 0, 7_000)
    assert retried.last_error == "HTTP 500"
