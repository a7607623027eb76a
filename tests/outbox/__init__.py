"""Tests of the transactional outbox and its delivery."""

from __future__ import annotations

import time

from lxml import etree
from sqlalchemy import select

from adapters.xroad.envelope import build_request
from adapters.xroad.identifiers import ClientId, ServiceId
from gateway.admin.schema import organization
from gateway.outbox import messages
from gateway.store.database import Database
from tests.support import add_organization

SILTA = ClientId("FI", "GOV", "1234567-8", "silta")
KELA = ClientId("FI", "GOV", "0246246-0", "kela-sub")


class FakeClock:
    """A controllable clock in seconds since the epoch, starting now."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def micros(self) -> int:
        return int(self.now * 1_000_000)


def feedback(message_id: str) -> bytes:
    """An X-Road request to Kela's feedback service."""
    body = etree.Element("{urn:example:kela}NotificationFeedback")
    etree.SubElement(body, "{urn:example:kela}status").text = "accepted"
    return build_request(
        client=SILTA,
        service=ServiceId(KELA, "NotificationFeedback"),
        message_id=message_id,
        body=body,
    )


def queue(db: Database, url: str, count: int = 1, *, now: int | None = None) -> list[str]:
    """Registers Kela (once) and queues ``count`` feedback messages to ``url``."""
    ids = [f"feedback-{index:04d}" for index in range(count)]
    with db.write() as conn:
        if (
            conn.execute(select(organization.c.id).where(organization.c.id == "kela")).first()
            is None
        ):
            add_organization(conn, "kela")
        for message_id in ids:
            messages.enqueue(
                conn,
                message_id=message_id,
                organization_id="kela",
                url=url,
                service_code="NotificationFeedback",
                payload=feedback(message_id),
                now=now,
            )
    return ids


def statuses(db: Database) -> dict[str, int]:
    with db.read() as conn:
        return {k: v for k, v in messages.count_by_status(conn).items() if v}
