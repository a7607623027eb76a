"""Data-sharing agreements (tietojen luovutussopimus) between two registered organisations.

An agreement lets a provider disclose data of the listed categories to a recipient
for the listed purposes (codes of schemas/silta/CodeSystem-purpose-of-use.json, e.g.
Social Welfare Act 1301/2014 §35 and §41, Act on Social Assistance 1412/1997) on a
stated legal basis. Lifecycle: draft → proposed → active once an admin of each party
has approved → suspended ⇄ active, or terminated; an agreement past its valid_until
reads as expired. Nothing is deleted: every change bumps the version and appends an
event (who, when, what) to the agreement's history.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from gateway.admin.organizations import existing_ids
from gateway.admin.schema import agreement, agreement_event
from gateway.errors import Conflict, Issue, NotFound, Unprocessable
from gateway.fhir.resource_types import is_stored_type
from gateway.policy.rules import purposes_of_use
from gateway.store.database import Database
from gateway.store.raw import json_column


class Status(StrEnum):
    DRAFT = "draft"
    PROPOSED = "proposed"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    EXPIRED = "expired"


# Statuses that end by expiry once valid_until has passed.
_EXPIRABLE = (Status.DRAFT, Status.PROPOSED, Status.ACTIVE, Status.SUSPENDED)


@dataclass(frozen=True, slots=True)
class Category:
    """A kind of data covered: a resource type, optionally narrowed to one category
    coding (``system|code``, e.g. a Consent or DocumentReference category)."""

    resource_type: str
    system: str | None = None
    code: str | None = None

    @property
    def token(self) -> str | None:
        """``system|code``, or None for the whole resource type."""
        return None if self.system is None else f"{self.system}|{self.code}"

    def to_json(self) -> dict[str, str | None]:
        return {"resource_type": self.resource_type, "system": self.system, "code": self.code}


def parse_category(resource_type: str, token: str | None = None) -> Category:
    """A Category from a resource type and an optional ``system|code`` token; a token
    without both parts is kept as given and refused by ``validate_terms``."""
    if token is None:
        return Category(resource_type)
    system, bar, code = token.rpartition("|")
    return Category(resource_type, system if bar else "", code)


@dataclass(frozen=True, slots=True)
class LegalBasis:
    """The statute reference (e.g. "1301/2014 §41") and free text."""

    statute: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class AgreementTerms:
    """What the parties agree on; the input of ``create_agreement``."""

    provider: str
    recipient: str
    categories: tuple[Category, ...]
    purposes: tuple[str, ...]
    legal_basis: LegalBasis
    consent_required: bool = True
    write_allowed: bool = False
    valid_from: date | None = None
    valid_until: date | None = None


@dataclass(frozen=True, slots=True)
class Agreement:
    """A stored agreement; ``status`` is its status on the date it was read."""

    id: str
    provider: str
    recipient: str
    categories: tuple[Category, ...]
    purposes: tuple[str, ...]
    legal_basis: LegalBasis
    consent_required: bool
    write_allowed: bool
    valid_from: date
    valid_until: date | None
    status: Status
    approvals: tuple[str, ...]
    version: int
    created_at: int
    updated_at: int

    def in_force(self, on_date: date) -> bool:
        """Active and within its validity period on ``on_date``."""
        return (
            self.status is Status.ACTIVE
            and self.valid_from <= on_date
            and (self.valid_until is None or on_date <= self.valid_until)
        )

    def covers(self, resource_type: str) -> bool:
        return any(c.resource_type == resource_type for c in self.categories)


@dataclass(frozen=True, slots=True)
class AgreementEvent:
    """One entry of an agreement's history."""

    version: int
    at: int
    actor: str
    action: str
    status: Status
    detail: dict[str, Any]


def _now() -> int:
    return time.time_ns() // 1000


def _invalid(expression: str, message: str) -> Issue:
    return Issue("error", "invalid", message, (expression,))


def validate_terms(conn: Connection, terms: AgreementTerms) -> None:
    """Raises Unprocessable with one issue per offending field (``purposes[1]``, …)."""
    issues: list[Issue] = []
    known = existing_ids(conn, [terms.provider, terms.recipient])
    for name in ("provider", "recipient"):
        value = getattr(terms, name)
        if value not in known:
            issues.append(_invalid(name, f"Organisation '{value}' is not registered"))
    if terms.provider == terms.recipient:
        issues.append(_invalid("recipient", "The recipient must differ from the provider"))
    if not terms.categories:
        issues.append(_invalid("categories", "At least one category of data is required"))
    for i, cat in enumerate(terms.categories):
        if not is_stored_type(cat.resource_type):
            issues.append(
                _invalid(
                    f"categories[{i}].resource_type",
                    f"'{cat.resource_type}' is not a resource type this gateway stores",
                )
            )
        if (cat.system is None) != (cat.code is None) or cat.code == "" or cat.system == "":
            issues.append(
                _invalid(f"categories[{i}].category", "A category needs both a system and a code")
            )
    if not terms.purposes:
        issues.append(_invalid("purposes", "At least one purpose of use is required"))
    for i, purpose in enumerate(terms.purposes):
        if purpose not in purposes_of_use():
            allowed = ", ".join(purposes_of_use())
            issues.append(
                _invalid(f"purposes[{i}]", f"'{purpose}' is not a purpose of use ({allowed})")
            )
        elif purpose in terms.purposes[:i]:
            issues.append(_invalid(f"purposes[{i}]", f"Purpose '{purpose}' is listed twice"))
    if not terms.legal_basis.statute.strip():
        issues.append(_invalid("legal_basis.statute", "The statute reference must not be empty"))
    if (
        terms.valid_from is not None
        and terms.valid_until is not None
        and terms.valid_until < terms.valid_from
    ):
        issues.append(_invalid("valid_until", "valid_until is before valid_from"))
    if issues:
        raise Unprocessable(f"The agreement is not valid: {issues[0].diagnostics}", issues=issues)


def _snapshot(terms: AgreementTerms, valid_from: date) -> dict[str, Any]:
    return {
        "provider": terms.provider,
        "recipient": terms.recipient,
        "categories": [c.to_json() for c in terms.categories],
        "purposes": list(terms.purposes),
        "legal_basis": {"statute": terms.legal_basis.statute, "text": terms.legal_basis.text},
        "consent_required": terms.consent_required,
        "write_allowed": terms.write_allowed,
        "valid_from": valid_from.isoformat(),
        "valid_until": terms.valid_until.isoformat() if terms.valid_until else None,
    }


_changes = 0


def changes() -> int:
    """How many agreement changes this process has made (lets caches of agreements in
    force notice a change at once; other processes' changes are noticed by polling)."""
    return _changes


def _append_event(
    conn: Connection,
    agreement_id: str,
    version: int,
    at: int,
    actor: str,
    action: str,
    status: Status,
    detail: dict[str, Any],
) -> None:
    global _changes
    _changes += 1
    conn.execute(
        insert(agreement_event).values(
            agreement_id=agreement_id,
            version=version,
            at=at,
            actor=actor,
            action=action,
            status=status.value,
            detail=detail,
        )
    )


def create_agreement(db: Database, *, terms: AgreementTerms, actor: str) -> Agreement:
    """Records a new agreement in draft (version 1, event "create")."""
    valid_from = terms.valid_from or date.today()
    agreement_id = str(uuid.uuid4())
    now = _now()
    with db.write() as conn:
        validate_terms(conn, terms)
        conn.execute(
            insert(agreement).values(
                id=agreement_id,
                provider=terms.provider,
                recipient=terms.recipient,
                categories=[c.to_json() for c in terms.categories],
                purposes=list(terms.purposes),
                legal_basis_statute=terms.legal_basis.statute,
                legal_basis_text=terms.legal_basis.text,
                consent_required=terms.consent_required,
                write_allowed=terms.write_allowed,
                valid_from=valid_from,
                valid_until=terms.valid_until,
                status=Status.DRAFT.value,
                approvals=[],
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
        _append_event(
            conn, agreement_id, 1, now, actor, "create", Status.DRAFT, _snapshot(terms, valid_from)
        )
        return _load(conn, agreement_id, date.today(), lock=False)


def _effective(stored: Status, valid_until: date | None, on_date: date) -> Status:
    if stored in _EXPIRABLE and valid_until is not None and valid_until < on_date:
        return Status.EXPIRED
    return stored


def _row_to_agreement(row: Any, on_date: date) -> Agreement:
    return agreement_from_row(row._mapping, on_date)


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else value


def agreement_from_row(row: Mapping[str, Any], on_date: date) -> Agreement:
    """An Agreement from a row of ``admin_agreement``, as SQLAlchemy or the bare driver
    returns it (JSON as text, dates as ISO strings, booleans as integers on SQLite)."""
    valid_from = _date(row["valid_from"])
    valid_until = _date(row["valid_until"])
    assert valid_from is not None
    return Agreement(
        id=row["id"],
        provider=row["provider"],
        recipient=row["recipient"],
        categories=tuple(
            Category(c["resource_type"], c.get("system"), c.get("code"))
            for c in json_column(row["categories"])
        ),
        purposes=tuple(json_column(row["purposes"])),
        legal_basis=LegalBasis(row["legal_basis_statute"], row["legal_basis_text"]),
        consent_required=bool(row["consent_required"]),
        write_allowed=bool(row["write_allowed"]),
        valid_from=valid_from,
        valid_until=valid_until,
        status=_effective(Status(row["status"]), valid_until, on_date),
        approvals=tuple(json_column(row["approvals"])),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _load(conn: Connection, agreement_id: str, on_date: date, *, lock: bool) -> Agreement:
    query = select(agreement).where(agreement.c.id == agreement_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"Agreement '{agreement_id}' does not exist")
    return _row_to_agreement(row, on_date)


def get_agreement(db: Database, agreement_id: str, *, on_date: date | None = None) -> Agreement:
    """The agreement ``agreement_id`` with its status on ``on_date`` (default today)."""
    with db.read() as conn:
        return _load(conn, agreement_id, on_date or date.today(), lock=False)


def agreement_history(db: Database, agreement_id: str) -> list[AgreementEvent]:
    """Every event of the agreement, oldest first; NotFound for an unknown id."""
    with db.read() as conn:
        _load(conn, agreement_id, date.today(), lock=False)
        rows = conn.execute(
            select(agreement_event)
            .where(agreement_event.c.agreement_id == agreement_id)
            .order_by(agreement_event.c.version)
        )
        return [
            AgreementEvent(r.version, r.at, r.actor, r.action, Status(r.status), dict(r.detail))
            for r in rows
        ]


def list_agreements(
    db: Database,
    *,
    provider: str | None = None,
    recipient: str | None = None,
    party: str | None = None,
    status: Status | None = None,
    on_date: date | None = None,
) -> list[Agreement]:
    """Agreements matching every given filter, oldest first; ``status`` is compared with
    the status on ``on_date`` (default today), so ``expired`` finds lapsed agreements."""
    day = on_date or date.today()
    query = select(agreement).order_by(agreement.c.created_at, agreement.c.id)
    if provider is not None:
        query = query.where(agreement.c.provider == provider)
    if recipient is not None:
        query = query.where(agreement.c.recipient == recipient)
    if party is not None:
        query = query.where(or_(agreement.c.provider == party, agreement.c.recipient == party))
    with db.read() as conn:
        found = [_row_to_agreement(row, day) for row in conn.execute(query)]
    return [a for a in found if status is None or a.status is status]


def active_agreements(
    db: Database,
    *,
    provider: str,
    recipient: str,
    on_date: date,
    resource_type: str | None = None,
    purpose: str | None = None,
) -> list[Agreement]:
    """The agreements in force on ``on_date`` that let ``provider`` disclose to
    ``recipient`` (optionally covering ``resource_type`` and ``purpose``): the question
    the access policy asks before data leaves its owner."""
    query = select(agreement).where(
        agreement.c.provider == provider,
        agreement.c.recipient == recipient,
        agreement.c.status == Status.ACTIVE.value,
        agreement.c.valid_from <= on_date,
        or_(agreement.c.valid_until.is_(None), agreement.c.valid_until >= on_date),
    )
    with db.read() as conn:
        found = [_row_to_agreement(row, on_date) for row in conn.execute(query)]
    return [
        a
        for a in found
        if (resource_type is None or a.covers(resource_type))
        and (purpose is None or purpose in a.purposes)
    ]


def _transition(
    conn: Connection,
    current: Agreement,
    *,
    status: Status,
    actor: str,
    action: str,
    detail: dict[str, Any],
    approvals: Sequence[str] | None = None,
) -> None:
    now = _now()
    version = current.version + 1
    values: dict[str, Any] = {"status": status.value, "version": version, "updated_at": now}
    if approvals is not None:
        values["approvals"] = list(approvals)
    result = conn.execute(
        update(agreement)
        .where(agreement.c.id == current.id, agreement.c.version == current.version)
        .values(**values)
    )
    if result.rowcount != 1:
        raise Conflict(f"Agreement '{current.id}' was changed concurrently; try again")
    _append_event(conn, current.id, version, now, actor, action, status, detail)


def _refuse(current: Agreement, action: str) -> Conflict:
    return Conflict(f"Agreement '{current.id}' is {current.status.value}: it cannot be {action}")


def approve(db: Database, agreement_id: str, *, as_org: str, actor: str) -> Agreement:
    """Records the approval of party ``as_org``: the first approval proposes the agreement,
    the approval of the other party activates it."""
    today = date.today()
    with db.write() as conn:
        current = _load(conn, agreement_id, today, lock=True)
        if as_org not in (current.provider, current.recipient):
            raise Unprocessable(
                f"'{as_org}' is not a party to agreement '{agreement_id}'",
                expression=("as_org",),
                issues=[
                    _invalid("as_org", f"'{as_org}' is neither the provider nor the recipient")
                ],
            )
        if current.status not in (Status.DRAFT, Status.PROPOSED):
            raise _refuse(current, "approved")
        if as_org in current.approvals:
            raise Conflict(f"'{as_org}' has already approved agreement '{agreement_id}'")
        approvals = (*current.approvals, as_org)
        both = {current.provider, current.recipient} <= set(approvals)
        status = Status.ACTIVE if both else Status.PROPOSED
        _transition(
            conn,
            current,
            status=status,
            actor=actor,
            action="approve",
            detail={"as_org": as_org},
            approvals=approvals,
        )
        return _load(conn, agreement_id, today, lock=False)


def suspend(db: Database, agreement_id: str, *, actor: str, reason: str = "") -> Agreement:
    """active → suspended: disclosures stop until the agreement is resumed."""
    return _simple(db, agreement_id, (Status.ACTIVE,), Status.SUSPENDED, "suspend", actor, reason)


def resume(db: Database, agreement_id: str, *, actor: str, reason: str = "") -> Agreement:
    """suspended → active."""
    return _simple(db, agreement_id, (Status.SUSPENDED,), Status.ACTIVE, "resume", actor, reason)


def terminate(db: Database, agreement_id: str, *, actor: str, reason: str = "") -> Agreement:
    """Ends the agreement for good, from any status but terminated or expired."""
    allowed = (Status.DRAFT, Status.PROPOSED, Status.ACTIVE, Status.SUSPENDED)
    return _simple(db, agreement_id, allowed, Status.TERMINATED, "terminate", actor, reason)


_PAST = {"suspend": "suspended", "resume": "resumed", "terminate": "terminated"}


def _simple(
    db: Database,
    agreement_id: str,
    allowed: tuple[Status, ...],
    target: Status,
    action: str,
    actor: str,
    reason: str,
) -> Agreement:
    today = date.today()
    with db.write() as conn:
        current = _load(conn, agreement_id, today, lock=True)
        if current.status not in allowed:
            raise _refuse(current, _PAST[action])
        _transition(
            conn, current, status=target, actor=actor, action=action, detail={"reason": reason}
        )
        return _load(conn, agreement_id, today, lock=False)


def expire_agreements(db: Database, *, on_date: date, actor: str = "system") -> list[str]:
    """Sweep: stores status expired (with an "expire" event) on every agreement whose
    valid_until is before ``on_date``; returns their ids."""
    expired: list[str] = []
    with db.write() as conn:
        rows = conn.execute(
            select(agreement)
            .where(
                agreement.c.status.in_([s.value for s in _EXPIRABLE]),
                agreement.c.valid_until < on_date,
            )
            .with_for_update()
        ).all()
        for row in rows:
            current = _row_to_agreement(row, on_date)
            _transition(
                conn,
                current,
                status=Status.EXPIRED,
                actor=actor,
                action="expire",
                detail={"valid_until": row.valid_until.isoformat()},
            )
            expired.append(row.id)
    return expired
