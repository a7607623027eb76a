"""Idempotent receipt of X-Road requests: a message id (X-Road message protocol v4.0
§2.2, header ``id``) seen again from the same client gets the response it got the
first time, and nothing is stored twice.

Usage, in the one write transaction that also stores what the message carries::

    with db.write() as conn:
        stored = find_response(conn, request.client, request.message_id)
        if stored is not None:
            return stored
        ...  # store the message's content
        response = build_response(request, body)
        record_response(conn, client_id=request.client, message_id=request.message_id,
                        service_code=request.service_code, response=response)
    return response

A request that ends in a Fault records nothing, so its sender may repeat it.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, bindparam, insert, select

from adapters.xroad.identifiers import ClientId
from adapters.xroad.schema import inbound
from gateway.store.raw import RawExecutor, RawStatement

_FIND = RawStatement(
    select(inbound.c.response).where(
        inbound.c.client_id == bindparam("client_id"),
        inbound.c.message_id == bindparam("message_id"),
    )
)
_RECORDED = ("client_id", "message_id", "service_code", "response", "received_at")
_RECORD = RawStatement(insert(inbound).values({name: bindparam(name) for name in _RECORDED}))


def find_response(conn: Connection, client_id: ClientId | str, message_id: str) -> bytes | None:
    """The response already given to ``message_id`` from ``client_id``, or None.

    On PostgreSQL this first takes a transaction-scoped advisory lock on the pair, so a
    concurrent copy of the same message waits until the first commits and then finds
    its response (SQLite write transactions are serial already)."""
    db = RawExecutor.of(conn)
    db.lock_transaction_key(f"{client_id}\n{message_id}")
    row = db.fetchone(_FIND, {"client_id": str(client_id), "message_id": message_id})
    return None if row is None else bytes(row[0])


def record_response(
    conn: Connection,
    *,
    client_id: ClientId | str,
    message_id: str,
    service_code: str,
    response: bytes,
) -> None:
    """Stores the response to ``message_id`` in the caller's transaction."""
    RawExecutor.of(conn).execute(
        _RECORD,
        {
            "client_id": str(client_id),
            "message_id": message_id,
            "service_code": service_code,
            "response": response,
            "received_at": time.time_ns() // 1000,
        },
    )
