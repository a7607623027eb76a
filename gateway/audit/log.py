"""The access and disclosure log (Act 703/2023 on the processing of client data in
healthcare and social welfare; IHE Basic Audit Log Patterns, BALP).

- Access entries: every FHIR request of an authenticated client — who (client id,
  organisation, end user if known), when, what (resources, the clients' HETUs, the
  query), purpose, outcome.
- Disclosure entries: every resource that left its custodian for another organisation —
  provider, recipient, the clients, data categories, and the agreement, consent and
  legal basis that allowed it.

Entries are appended by one writer at a time and chained: each entry's hash covers its
content and the previous entry's hash, so changing, removing or reordering any entry
breaks the chain (``verify``). The database refuses UPDATE and DELETE on the log.

Requests hand their entries to an in-memory queue; a background thread appends them in
batches (one transaction per batch), so a request never waits for the log. On shutdown
the queue is drained. The price: entries of the last moments (at most one flush
interval) are lost if the process dies abruptly.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, select, text

from gateway.audit.schema import audit_entry, audit_subject
from gateway.policy import Requester, Touched
from gateway.store.database import Database
from gateway.store.raw import RawExecutor, RawStatement
from gateway.store.schema import resource, sp_token

log = logging.getLogger(__name__)

HETU_SYSTEM = "urn:oid:1.2.246.21"
GENESIS = "0" * 64
ACCESS = "access"
DISCLOSURE = "disclosure"
_CHAIN_LOCK_KEY = 0x5117A_A0D17  # PostgreSQL advisory lock of the chain's tail


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry before it is chained; ``patients`` are Patient ids (HETUs are resolved
    when the entry is appended)."""

    at: int
    kind: str
    action: str
    outcome: str
    client_id: str | None
    organization: str | None
    user_id: str | None
    purpose: str | None
    provider: str | None = None
    recipient: str | None = None
    patients: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


def _entry_hash(prev_hash: str, content: dict[str, Any]) -> str:
    payload = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + payload).hexdigest()


def _content(seq: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed content of an entry: every column but the hashes."""
    content = {k: row[k] for k in _COLUMNS}
    content["seq"] = seq
    return content


_COLUMNS = (
    "at",
    "kind",
    "action",
    "outcome",
    "client_id",
    "organization",
    "user_id",
    "purpose",
    "provider",
    "recipient",
    "record",
)


def request_records(
    *,
    requester: Requester,
    action: str,
    status: int,
    touched: Sequence[Touched],
    query: str | None,
    at: int,
) -> list[AuditRecord]:
    """The access entry of one request and a disclosure entry per (custodian, basis)."""
    outcome = "success" if status < 400 else ("denied" if status in (401, 403) else "failure")
    seen = [t for t in touched if t.decision.permitted]
    denied = [t for t in touched if not t.decision.permitted]
    access = AuditRecord(
        at=at,
        kind=ACCESS,
        action=action,
        outcome=outcome,
        client_id=requester.client_id,
        organization=requester.organization,
        user_id=requester.user,
        purpose=requester.purpose,
        patients=_unique(t.client for t in seen),
        detail={
            "status": status,
            "query": query,
            "resources": list(_unique(f"{t.res_type}/{t.res_id}" for t in seen)),
            "withheld": len(denied),
        },
    )
    records = [access]
    groups: dict[tuple[str, str | None, str | None], list[Touched]] = {}
    for item in seen:
        if item.custodian == requester.organization or item.decision.rule in (
            "directory",
            "write",
            "custodian",
        ):
            continue
        key = (item.custodian or "", item.decision.agreement_id, item.decision.consent_id)
        groups.setdefault(key, []).append(item)
    for (provider, agreement_id, consent_id), items in groups.items():
        decision = items[0].decision
        records.append(
            AuditRecord(
                at=at,
                kind=DISCLOSURE,
                action=action,
                outcome="success",
                client_id=requester.client_id,
                organization=requester.organization,
                user_id=requester.user,
                purpose=requester.purpose,
                provider=provider,
                recipient=requester.organization,
                patients=_unique(t.client for t in items),
                detail={
                    "resources": list(_unique(f"{t.res_type}/{t.res_id}" for t in items)),
                    "categories": sorted({t.res_type for t in items}),
                    "agreement": agreement_id,
                    "consent": consent_id,
                    "legal_basis": decision.legal_basis,
                    "rule": decision.rule,
                    "redactions": sorted({r for t in items for r in t.decision.redactions}),
                },
            )
        )
    return records


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _hetus(conn: Connection, patient_ids: Sequence[str]) -> dict[str, str]:
    """Patient id → HETU (identifier ``urn:oid:1.2.246.21``) from the search index."""
    if not patient_ids:
        return {}
    rows = conn.execute(
        select(resource.c.res_id, sp_token.c.code)
        .join(sp_token, sp_token.c.resource_pk == resource.c.pk)
        .where(
            resource.c.res_type == "Patient",
            resource.c.res_id.in_(sorted(set(patient_ids))),
            sp_token.c.param == "identifier",
            sp_token.c.system == HETU_SYSTEM,
        )
    )
    return {res_id: code for res_id, code in rows}


_LAST_ENTRY = RawStatement(text("SELECT seq, hash FROM audit_entry ORDER BY seq DESC LIMIT 1"))


def append(db: Database, records: Sequence[AuditRecord]) -> None:
    """Chains and stores ``records`` in one transaction."""
    if not records:
        return
    with db.write() as conn:
        if db.is_postgresql:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})
        raw = RawExecutor.of(conn)
        last = raw.fetchone(_LAST_ENTRY, {})
        seq, prev_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        hetus = _hetus(conn, [p for r in records for p in r.patients])
        entries: list[dict[str, Any]] = []
        subjects: list[dict[str, Any]] = []
        for record in records:
            seq += 1
            patients = [{"id": p, "hetu": hetus.get(p)} for p in record.patients]
            row: dict[str, Any] = {
                "at": record.at,
                "kind": record.kind,
                "action": record.action,
                "outcome": record.outcome,
                "client_id": record.client_id,
                "organization": record.organization,
                "user_id": record.user_id,
                "purpose": record.purpose,
                "provider": record.provider,
                "recipient": record.recipient,
                "record": {**record.detail, "patients": patients},
            }
            digest = _entry_hash(prev_hash, _content(seq, row))
            row["record"] = orjson.dumps(row["record"]).decode()
            entries.append({**row, "seq": seq, "prev_hash": prev_hash, "hash": digest})
            subjects.extend(
                {"seq": seq, "hetu": hetu}
                for hetu in dict.fromkeys(p["hetu"] for p in patients if p["hetu"])
            )
            prev_hash = digest
        raw.insert_rows(audit_entry, entries)
        raw.insert_rows(audit_subject, subjects)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    entries: int
    ok: bool
    broken_at: int | None = None
    problem: str = ""


def verify(db: Database) -> VerifyResult:
    """Recomputes the hash chain from the first entry (``silta admin audit verify``)."""
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    with db.read() as conn:
        rows = conn.execute(select(audit_entry).order_by(audit_entry.c.seq)).mappings()
        for row in rows:
            seq = int(row["seq"])
            if seq != expected_seq:
                return VerifyResult(count, False, expected_seq, f"entry {expected_seq} is missing")
            if row["prev_hash"] != prev_hash:
                return VerifyResult(
                    count, False, seq, f"entry {seq} does not follow entry {seq - 1}"
                )
            digest = _entry_hash(prev_hash, _content(seq, dict(row)))
            if digest != row["hash"]:
                return VerifyResult(
                    count, False, seq, f"entry {seq} was changed after it was written"
                )
            prev_hash = digest
            expected_seq += 1
            count += 1
    return VerifyResult(count, True)


def entries(
    db: Database,
    *,
    hetu: str | None = None,
    organization: str | None = None,
    kind: str | None = None,
    since: int | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Log entries newest first, optionally of one client (HETU), organisation or kind."""
    e = audit_entry.c
    query = select(audit_entry)
    if hetu is not None:
        query = query.where(
            e.seq.in_(select(audit_subject.c.seq).where(audit_subject.c.hetu == hetu))
        )
    if organization is not None:
        query = query.where((e.organization == organization) | (e.provider == organization))
    if kind is not None:
        query = query.where(e.kind == kind)
    if since is not None:
        query = query.where(e.at >= since)
    if before_seq is not None:
        query = query.where(e.seq < before_seq)
    query = query.order_by(e.seq.desc()).limit(limit)
    with db.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


class AuditLog:
    """The queue between requests and the log, and the thread that empties it."""

    def __init__(self, db: Database, *, flush_interval: float = 0.2, batch_size: int = 500) -> None:
        self.db = db
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._queue: queue.SimpleQueue[AuditRecord] = queue.SimpleQueue()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, records: Iterable[AuditRecord]) -> None:
        for record in records:
            self._queue.put(record)

    def _drain(self) -> Iterator[list[AuditRecord]]:
        batch: list[AuditRecord] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def flush(self) -> None:
        """Appends everything queued so far (also called by readers of the log)."""
        with self._flush_lock:
            for batch in self._drain():
                try:
                    append(self.db, batch)
                except Exception:
                    # Keep the entries: they are retried on the next flush.
                    log.exception("audit log: appending %d entries failed", len(batch))
                    for record in batch:
                        self._queue.put(record)
                    return

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()
        self.flush()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="silta-audit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()


def now_micros() -> int:
    return time.time_ns() // 1000
