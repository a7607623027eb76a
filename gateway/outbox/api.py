"""The admin REST API of the outbox: list and inspect outbound messages, send a pending
or dead one again. Needs the admin token (``gateway.admin.api.require_admin``); meant
to be included beside the admin router (``app.include_router(router, prefix=...)``).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from gateway.admin.api import require_admin
from gateway.outbox import messages
from gateway.outbox.messages import OutboxMessage, Status
from gateway.search.values import format_instant
from gateway.store.database import Database


class OutboxMessageOut(BaseModel):
    id: int
    message_id: str = Field(description="Stable id; receivers drop duplicates by it")
    organization: str = Field(description="Receiving organisation")
    url: str
    service_code: str
    status: Status
    attempts: int
    next_attempt: str | None = Field(description="When a pending message is tried next")
    last_error: str | None
    created: str
    delivered: str | None

    @classmethod
    def fields_of(cls, m: OutboxMessage) -> dict[str, object]:
        return {
            "id": m.id,
            "message_id": m.message_id,
            "organization": m.organization_id,
            "url": m.url,
            "service_code": m.service_code,
            "status": m.status,
            "attempts": m.attempts,
            "next_attempt": format_instant(m.next_attempt_at) if m.status == "pending" else None,
            "last_error": m.last_error,
            "created": format_instant(m.created_at),
            "delivered": None if m.delivered_at is None else format_instant(m.delivered_at),
        }

    @classmethod
    def of(cls, m: OutboxMessage) -> OutboxMessageOut:
        return cls.model_validate(cls.fields_of(m))


class OutboxMessageDetail(OutboxMessageOut):
    payload: str = Field(description="The message as sent (UTF-8 XML)")

    @classmethod
    def of(cls, m: OutboxMessage) -> OutboxMessageDetail:
        fields = cls.fields_of(m)
        fields["payload"] = m.payload.decode("utf-8", "replace")
        return cls.model_validate(fields)


router = APIRouter(tags=["outbox"])


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


@router.get("/outbox", response_model=list[OutboxMessageOut])
def list_outbox(
    request: Request,
    status: Status | None = None,
    organization: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    admin: str | None = Depends(require_admin),
) -> list[OutboxMessageOut]:
    """Outbound messages, newest first."""
    with _database(request).read() as conn:
        found = messages.list_messages(
            conn, status=status, organization_id=organization, limit=limit
        )
    return [OutboxMessageOut.of(m) for m in found]


@router.get("/outbox/{message_pk}", response_model=OutboxMessageDetail)
def get_outbox_message(
    message_pk: int, request: Request, admin: str | None = Depends(require_admin)
) -> OutboxMessageDetail:
    """One message with its payload."""
    with _database(request).read() as conn:
        return OutboxMessageDetail.of(messages.get_message(conn, message_pk))


@router.post("/outbox/{message_pk}/retry", response_model=OutboxMessageOut)
def retry_outbox_message(
    message_pk: int, request: Request, admin: str | None = Depends(require_admin)
) -> OutboxMessageOut:
    """Makes a pending or dead message due now; a delivered one is a conflict (409)."""
    with _database(request).write() as conn:
        return OutboxMessageOut.of(messages.retry(conn, message_pk))
