"""The transactional outbox: outbound messages written in the transaction of the change
that caused them, then delivered at least once by :mod:`gateway.outbox.dispatcher`.

A message is ``pending`` until delivered (``delivered``) or given up after the last
allowed attempt (``dead``); an admin can send a dead message again (:func:`retry`).
Every function works on a connection of the caller's transaction
(``Database.read()`` / ``Database.write()``); times are microseconds since the Unix
epoch, UTC.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.outbox.schema import outbox_message

Status = Literal["pending", "delivered", "dead"]
STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One outbound message and the state of its delivery."""

    id: int
    message_id: str
    organization_id: str
    url: str
    service_code: str
    payload: bytes
    status: Status
    attempts: int
    next_attempt_at: int
    last_error: str | None
    created_at: int
    delivered_at: int | None


def now_micros() -> int:
    return time.time_ns() // 1000


def enqueue(
    conn: Connection,
    *,
    message_id: str,
    organization_id: str,
    url: str,
    service_code: str,
    payload: bytes,
    now: int | None = None,
) -> bool:
    """Adds a message for delivery, due at once, in the caller's open write transaction,
    so it exists exactly when the change that caused it commits. A message id already
    in the outbox is left as it is (False): re-running the same change sends nothing new.
    """
    at = now_micros() if now is None else now
    values: dict[str, Any] = {
        "message_id": message_id,
        "organization_id": organization_id,
        "url": url,
        "service_code": service_code,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(outbox_message).values(values)
    statement = statement.on_conflict_do_nothing(index_elements=["message_id"])
    inserted = conn.execute(statement.returning(outbox_message.c.id)).first()
    return inserted is not None


def get_message(conn: Connection, id: int) -> OutboxMessage:
    row = conn.execute(select(outbox_message).where(outbox_message.c.id == id)).mappings().first()
    if row is None:
        raise NotFound(f"There is no outbox message {id}")
    return _message(row)


def find_message(conn: Connection, message_id: str) -> OutboxMessage | None:
    """The message with the stable id ``message_id``, or None."""
    row = (
        conn.execute(select(outbox_message).where(outbox_message.c.message_id == message_id))
        .mappings()
        .first()
    )
    return None if row is None else _message(row)


def list_messages(
    conn: Connection,
    *,
    status: str | None = None,
    organization_id: str | None = None,
    limit: int = 100,
) -> list[OutboxMessage]:
    """Messages matching the filters, newest first."""
    query = select(outbox_message).order_by(outbox_message.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(outbox_message.c.status == check_status(status))
    if organization_id is not None:
        query = query.where(outbox_message.c.organization_id == organization_id)
    return [_message(row) for row in conn.execute(query).mappings()]


def count_by_status(conn: Connection) -> dict[str, int]:
    """How many messages are in each status (every status listed)."""
    query = select(outbox_message.c.status, func.count()).group_by(outbox_message.c.status)
    counts: dict[str, int] = {status: 0 for status in STATUSES}
    counts.update({row[0]: int(row[1]) for row in conn.execute(query)})
    return counts


def retry(conn: Connection, id: int, *, now: int | None = None) -> OutboxMessage:
    """Makes a pending or dead message due now; a dead one gets a full new series of
    attempts. Delivered messages are not sent again."""
    message = get_message(conn, id)
    if message.status == "delivered":
        raise Conflict(f"Outbox message {id} was already delivered")
    attempts = 0 if message.status == "dead" else message.attempts
    conn.execute(
        update(outbox_message)
        .where(outbox_message.c.id == id)
        .values(
            status="pending",
            attempts=attempts,
            next_attempt_at=now_micros() if now is None else now,
        )
    )
    return get_message(conn, id)


def check_status(status: str) -> Status:
    if status not in STATUSES:
        raise Unprocessable(f"'{status}' is not an outbox status ({', '.join(STATUSES)})")
    return status


# ---------------------------------------------------------------------------
# The dispatcher's side
# ---------------------------------------------------------------------------


def any_due(conn: Connection, *, now: int) -> bool:
    """Whether some pending message is due (a read, so an idle dispatcher need not take
    the write lock)."""
    query = select(outbox_message.c.id).where(
        outbox_message.c.status == "pending", outbox_message.c.next_attempt_at <= now
    )
    return conn.execute(query.limit(1)).first() is not None


def claim_due(conn: Connection, *, now: int, limit: int, lease_until: int) -> list[OutboxMessage]:
    """Takes up to ``limit`` due pending messages, counting the attempt and pushing their
    due time to ``lease_until`` so that no other dispatcher takes them meanwhile; one
    whose dispatcher dies is due again then. On PostgreSQL the rows are locked with
    ``FOR UPDATE SKIP LOCKED``, so concurrent dispatchers claim disjoint messages;
    SQLite write transactions are serial already."""
    query = (
        select(outbox_message)
        .where(outbox_message.c.status == "pending", outbox_message.c.next_attempt_at <= now)
        .order_by(outbox_message.c.next_attempt_at, outbox_message.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).mappings().all()
    if not rows:
        return []
    conn.execute(
        update(outbox_message)
        .where(outbox_message.c.id.in_([row["id"] for row in rows]))
        .values(attempts=outbox_message.c.attempts + 1, next_attempt_at=lease_until)
    )
    return [
        _message({**row, "attempts": row["attempts"] + 1, "next_attempt_at": lease_until})
        for row in rows
    ]


def release(conn: Connection, ids: Iterable[int], *, now: int) -> None:
    """Hands claimed messages back unsent: due now, their attempt not counted."""
    chosen = list(ids)
    if chosen:
        conn.execute(
            update(outbox_message)
            .where(outbox_message.c.id.in_(chosen), outbox_message.c.status == "pending")
            .values(attempts=outbox_message.c.attempts - 1, next_attempt_at=now)
        )


def mark_delivered(conn: Connection, id: int, *, now: int) -> None:
    conn.execute(
        update(outbox_message)
        .where(outbox_message.c.id == id, outbox_message.c.status == "pending")
        .values(status="delivered", delivered_at=now, last_error=None)
    )


def mark_failed(conn: Connection, id: int, *, error: str, retry_at: int | None) -> None:
    """Records a failed attempt: due again at ``retry_at``, or dead when it is None."""
    values: dict[str, Any] = {"last_error": error[:4000]}
    if retry_at is None:
        values["status"] = "dead"
    else:
        values["next_attempt_at"] = retry_at
    conn.execute(
        update(outbox_message)
        .where(outbox_message.c.id == id, outbox_message.c.status == "pending")
        .values(values)
    )


def _message(row: Any) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        message_id=row["message_id"],
        organization_id=row["organization_id"],
        url=row["url"],
        service_code=row["service_code"],
        payload=bytes(row["payload"]),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )
