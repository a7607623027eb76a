"""The access and disclosure log (Act 703/2023 on the processing of client data in
healthcare and social welfare; IHE Basic Audit Log Patterns, BALP).

One entry per FHIR request of an authenticated client:

- the access: who (client id, organisation, end user if known), when, what (resources,
  the clients' HETUs, the query), purpose, outcome;
- the disclosures it made: per organisation whose resources left it for the requester —
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select, text

from gateway.audit.schema import audit_entry, audit_key
from gateway.errors import FhirError
from gateway.policy import Requester, Touched
from gateway.search.values import format_instant
from gateway.store.database import Database
from gateway.store.group_commit import commit_waiter
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
    """The log entry of one request before it is chained: the access, and the
    disclosures it made (``patients`` are Patient ids; their HETUs are resolved when the
    entry is appended)."""

    at: int
    action: str
    outcome: str
    client_id: str | None
    organization: str | None
    user_id: str | None
    purpose: str | None
    patients: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    disclosures: tuple[dict[str, Any], ...] = ()

    @property
    def kind(self) -> str:
        return DISCLOSURE if self.disclosures else ACCESS


def _entry_hash(prev_hash: str, content: dict[str, Any]) -> str:
    payload = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + payload).hexdigest()


_COLUMNS = (
    "at",
    "kind",
    "action",
    "outcome",
    "client_id",
    "organization",
    "user_id",
    "purpose",
    "record",
)


def _content(seq: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed content of an entry: every column but the hashes."""
    content = {k: row[k] for k in _COLUMNS}
    content["seq"] = seq
    return content


def request_record(
    *,
    requester: Requester,
    action: str,
    status: int,
    touched: Sequence[Touched],
    query: str | None,
    at: int,
) -> AuditRecord:
    """The entry of one request: what it touched, and one disclosure per (custodian,
    agreement, consent) of the resources that left their custodian."""
    outcome = "success" if status < 400 else ("denied" if status in (401, 403) else "failure")
    seen = [t for t in touched if t.decision.permitted]
    groups: dict[tuple[str, str | None, str | None], list[Touched]] = {}
    for item in seen:
        if item.decision.rule in _NOT_DISCLOSURES or item.custodian == requester.organization:
            continue
        key = (item.custodian or "", item.decision.agreement_id, item.decision.consent_id)
        groups.setdefault(key, []).append(item)
    disclosures = tuple(
        {
            "provider": provider,
            "patients": list(_unique(t.client for t in items)),
            "resources": list(_unique(f"{t.res_type}/{t.res_id}" for t in items)),
            "categories": sorted({t.res_type for t in items}),
            "agreement": agreement_id,
            "consent": consent_id,
            "legal_basis": items[0].decision.legal_basis,
            "rule": items[0].decision.rule,
            "redactions": sorted({r for t in items for r in t.decision.redactions}),
        }
        for (provider, agreement_id, consent_id), items in groups.items()
    )
    return AuditRecord(
        at=at,
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
            "withheld": len(touched) - len(seen),
        },
        disclosures=disclosures,
    )


# Decisions that disclose nothing to another organisation.
_NOT_DISCLOSURES = frozenset(("directory", "write", "custodian"))


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


# Patient id → HETU, kept by the process (a client's HETU practically never changes).
_HETU_CACHE: dict[str, str] = {}
_HETU_CACHE_SIZE = 200_000


def _hetus(db: Database, patient_ids: Iterable[str]) -> Mapping[str, str]:
    """Patient id → HETU (identifier ``urn:oid:1.2.246.21``) from the search index; the
    database is read only for ids the process has not seen."""
    if len(_HETU_CACHE) > _HETU_CACHE_SIZE:
        _HETU_CACHE.clear()
    # Not ``set - dict.keys()``: that copies every key of the cache.
    missing = sorted({p for p in patient_ids if p not in _HETU_CACHE})
    if missing:
        with db.read() as conn:
            rows = conn.execute(
                select(resource.c.res_id, sp_token.c.code)
                .join(sp_token, sp_token.c.resource_pk == resource.c.pk)
                .where(
                    resource.c.res_type == "Patient",
                    resource.c.res_id.in_(missing),
                    sp_token.c.param == "identifier",
                    sp_token.c.system == HETU_SYSTEM,
                )
            )
            _HETU_CACHE.update((res_id, code) for res_id, code in rows)
    return _HETU_CACHE


_LAST_ENTRY = RawStatement(text("SELECT seq, hash FROM audit_entry ORDER BY seq DESC LIMIT 1"))


def _with_hetus(patients: Iterable[str], hetus: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"id": p, "hetu": hetus.get(p)} for p in patients]


def _prepared(
    record: AuditRecord, hetus: Mapping[str, str]
) -> tuple[dict[str, Any], str, list[str]]:
    """An entry before it is chained: its hashed columns (``record`` as an object), the
    ``record`` column's JSON text, and the keys it is found by."""
    patients = _with_hetus(record.patients, hetus)
    disclosures = [{**d, "patients": _with_hetus(d["patients"], hetus)} for d in record.disclosures]
    detail = {**record.detail, "patients": patients, "disclosures": disclosures}
    row: dict[str, Any] = {
        "at": record.at,
        "kind": record.kind,
        "action": record.action,
        "outcome": record.outcome,
        "client_id": record.client_id,
        "organization": record.organization,
        "user_id": record.user_id,
        "purpose": record.purpose,
        "record": detail,
    }
    found_by = {f"hetu:{p['hetu']}" for p in patients if p["hetu"]}
    found_by.update(f"hetu:{p['hetu']}" for d in disclosures for p in d["patients"] if p["hetu"])
    found_by.update(f"org:{d['provider']}" for d in disclosures if d["provider"])
    if record.organization:
        found_by.add(f"org:{record.organization}")
    return row, orjson.dumps(detail).decode(), sorted(found_by)


def append(db: Database, records: Sequence[AuditRecord]) -> None:
    """Chains and stores ``records`` in one transaction. Everything but the chain is
    prepared before the write transaction, which is then held only to number, hash and
    insert the entries."""
    if not records:
        return
    hetus = _hetus(
        db,
        [p for r in records for p in r.patients]
        + [p for r in records for d in r.disclosures for p in d["patients"]],
    )
    prepared = [_prepared(record, hetus) for record in records]
    with db.write() as conn:
        raw = RawExecutor.of(conn)
        raw.lock_transaction_key(_CHAIN_LOCK_KEY)
        last = raw.fetchone(_LAST_ENTRY, {})
        seq, prev_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        entries: list[dict[str, Any]] = []
        keys: list[dict[str, Any]] = []
        for row, record_json, found_by in prepared:
            seq += 1
            row["seq"] = seq  # the hashed content: the columns of _content
            digest = _entry_hash(prev_hash, row)
            row.update(record=record_json, prev_hash=prev_hash, hash=digest)
            entries.append(row)
            keys.extend({"key": key, "seq": seq} for key in found_by)
            prev_hash = digest
        raw.insert_rows(audit_entry, entries)
        raw.insert_rows(audit_key, keys)


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
    """Log entries newest first, optionally of one client (HETU), one organisation (as
    requester or as provider of a disclosure), or one kind."""
    e = audit_entry.c
    query = select(audit_entry)
    for key in (f"hetu:{hetu}" if hetu else None, f"org:{organization}" if organization else None):
        if key is not None:
            query = query.where(e.seq.in_(select(audit_key.c.seq).where(audit_key.c.key == key)))
    if kind is not None:
        query = query.where(e.kind == kind)
    if since is not None:
        query = query.where(e.at >= since)
    if before_seq is not None:
        query = query.where(e.seq < before_seq)
    query = query.order_by(e.seq.desc()).limit(limit)
    with db.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def client_extract(found: Sequence[Mapping[str, Any]], hetu: str) -> dict[str, Any]:
    """What the log holds of one client: the accesses to their data and the disclosures
    of it (the client's right to know who used or received their data)."""

    def concerns(patients: Iterable[Mapping[str, Any]]) -> bool:
        return any(p.get("hetu") == hetu for p in patients)

    accesses: list[dict[str, Any]] = []
    disclosures: list[dict[str, Any]] = []
    for entry in found:
        record = entry["record"]
        common = {
            "at": format_instant(int(entry["at"])),
            "organization": entry["organization"],
            "client": entry["client_id"],
            "purpose": entry["purpose"],
            "action": entry["action"],
        }
        if concerns(record.get("patients", [])):
            accesses.append(
                {**common, "outcome": entry["outcome"], "resources": record.get("resources", [])}
            )
        for disclosure in record.get("disclosures", []):
            if concerns(disclosure.get("patients", [])):
                disclosures.append(
                    {
                        **common,
                        "provider": disclosure["provider"],
                        "recipient": entry["organization"],
                        "resources": disclosure["resources"],
                        "categories": disclosure["categories"],
                        "agreement": disclosure["agreement"],
                        "consent": disclosure["consent"],
                        "legal_basis": disclosure["legal_basis"],
                    }
                )
    return {"hetu": hetu, "accesses": accesses, "disclosures": disclosures}


@contextmanager
def audited(
    audit: AuditLog | None,
    requester: Requester | None,
    touched: list[Touched],
    *,
    action: str,
    query: str | None,
) -> Iterator[None]:
    """Logs the request run inside the block, whatever its outcome: the status of the
    FhirError it raised, 500 for anything else (nothing is logged without a requester).
    Inside ``deferred_commits`` the entry waits for the commit of the block's writes,
    and a failed commit is logged as a failure."""
    status = 500
    try:
        yield
        status = 200
    except FhirError as error:
        status = error.status
        raise
    finally:
        if audit is not None and requester is not None:
            log_entry, who = audit, requester

            def record(committed: bool) -> None:
                log_entry.record(
                    request_record(
                        requester=who,
                        action=action,
                        status=status if committed else 500,
                        touched=touched,
                        query=query,
                        at=now_micros(),
                    )
                )

            waiter = commit_waiter()
            if waiter is None:
                record(True)
            else:
                waiter.when_settled(record)


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

    def record(self, record: AuditRecord) -> None:
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
