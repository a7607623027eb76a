"""Data-sharing agreements: dual approval, lifecycle, versioned history, expiry and the
question the policy engine asks (``active_agreements``)."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from gateway.admin import agreements as svc
from gateway.admin.agreements import Status
from gateway.admin.schema import agreement, agreement_event
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.policy.rules import purpose_system, purposes_of_use
from gateway.store.database import Database
from tests.admin import START, TODAY, clean_admin_tables, days, register_parties, terms


@pytest.fixture
def db(database: Database) -> Database:
    clean_admin_tables(database)
    register_parties(database)
    return database


def active(db: Database, **overrides: object) -> svc.Agreement:
    created = svc.create_agreement(db, terms=terms(**overrides), actor="admin@kela")
    svc.approve(db, created.id, as_org="kela", actor="admin@kela")
    return svc.approve(db, created.id, as_org="pirha", actor="admin@pirha")


def count(db: Database) -> tuple[int, int]:
    with db.read() as conn:
        agreements = conn.execute(select(func.count()).select_from(agreement)).scalar_one()
        events = conn.execute(select(func.count()).select_from(agreement_event)).scalar_one()
    return agreements, events


def test_purposes_come_from_the_codesystem() -> None:
    assert {
        "concern-notification",
        "multidisciplinary-cooperation",
        "social-assistance",
        "care-coordination",
    } <= set(purposes_of_use())
    assert purpose_system().endswith("/CodeSystem/purpose-of-use")


def test_parse_category() -> None:
    assert svc.parse_category("Task") == svc.Category("Task")
    assert svc.parse_category("Consent", "http://x.org/cs|social") == svc.Category(
        "Consent", "http://x.org/cs", "social"
    )
    assert svc.parse_category("Consent", "social") == svc.Category("Consent", "", "social")
    assert svc.Category("Consent", "s", "c").token == "s|c"


def test_create_is_a_draft_at_version_one(db: Database) -> None:
    created = svc.create_agreement(db, terms=terms(), actor="admin@kela")
    assert created.status is Status.DRAFT
    assert created.version == 1 and created.approvals == ()
    assert created.valid_from == START
    assert svc.get_agreement(db, created.id) == created


def test_dual_approval_activates(db: Database) -> None:
    created = svc.create_agreement(db, terms=terms(), actor="admin@kela")
    first = svc.approve(db, created.id, as_org="pirha", actor="admin@pirha")
    assert first.status is Status.PROPOSED and first.approvals == ("pirha",)
    assert svc.active_agreements(db, provider="kela", recipient="pirha", on_date=TODAY) == []
    second = svc.approve(db, created.id, as_org="kela", actor="admin@kela")
    assert second.status is Status.ACTIVE and second.version == 3
    assert set(second.approvals) == {"kela", "pirha"}


def test_same_party_cannot_approve_twice(db: Database) -> None:
    created = svc.create_agreement(db, terms=terms(), actor="admin@kela")
    svc.approve(db, created.id, as_org="kela", actor="admin@kela")
    with pytest.raises(Conflict):
        svc.approve(db, created.id, as_org="kela", actor="admin@kela")
    assert svc.get_agreement(db, created.id).status is Status.PROPOSED


def test_only_a_party_may_approve(db: Database) -> None:
    created = svc.create_agreement(db, terms=terms(), actor="admin@kela")
    with pytest.raises(Unprocessable) as raised:
        svc.approve(db, created.id, as_org="etsiva-tampere", actor="x")
    assert raised.value.issues[0].expression == ("as_org",)
    assert svc.get_agreement(db, created.id).version == 1


def test_suspend_resume_terminate(db: Database) -> None:
    agreed = active(db)
    assert svc.suspend(db, agreed.id, actor="admin@kela", reason="audit").status is Status.SUSPENDED
    assert svc.resume(db, agreed.id, actor="admin@kela").status is Status.ACTIVE
    ended = svc.terminate(db, agreed.id, actor="admin@pirha", reason="replaced")
    assert ended.status is Status.TERMINATED and ended.version == 6


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ("draft", "suspend"),
        ("draft", "resume"),
        ("active", "approve"),
        ("active", "resume"),
        ("terminated", "approve"),
        ("terminated", "suspend"),
        ("terminated", "resume"),
        ("terminated", "terminate"),
    ],
)
def test_invalid_transitions_conflict_and_change_nothing(
    db: Database, setup: str, action: str
) -> None:
    if setup == "draft":
        subject = svc.create_agreement(db, terms=terms(), actor="a")
    else:
        subject = active(db)
        if setup == "terminated":
            subject = svc.terminate(db, subject.id, actor="a")
    before = count(db)
    with pytest.raises(Conflict) as raised:
        if action == "approve":
            svc.approve(db, subject.id, as_org="kela", actor="a")
        else:
            getattr(svc, action)(db, subject.id, actor="a")
    assert raised.value.status == 409
    assert count(db) == before
    assert svc.get_agreement(db, subject.id) == subject


def test_unknown_agreement_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        svc.get_agreement(db, "nope")
    with pytest.raises(NotFound):
        svc.suspend(db, "nope", actor="a")
    with pytest.raises(NotFound):
        svc.agreement_history(db, "nope")


def test_malformed_agreement_names_each_field_and_changes_nothing(db: Database) -> None:
    bad = terms(
        provider="kela",
        recipient="nobody",
        categories=(svc.Category("Unicorn"), svc.parse_category("Consent", "no-system")),
        purposes=("concern-notification", "marketing", "concern-notification"),
        legal_basis=svc.LegalBasis(" "),
        valid_from=date(2026, 5, 1),
        valid_until=date(2026, 4, 30),
    )
    with pytest.raises(Unprocessable) as raised:
        svc.create_agreement(db, terms=bad, actor="a")
    assert raised.value.status == 422
    assert [i.expression for i in raised.value.issues] == [
        ("recipient",),
        ("categories[0].resource_type",),
        ("categories[1].category",),
        ("purposes[1]",),
        ("purposes[2]",),
        ("legal_basis.statute",),
        ("valid_until",),
    ]
    assert count(db) == (0, 0)


def test_empty_lists_and_self_agreement_are_refused(db: Database) -> None:
    with pytest.raises(Unprocessable) as raised:
        svc.create_agreement(
            db, terms=terms(recipient="kela", categories=(), purposes=()), actor="a"
        )
    assert [i.expression[0] for i in raised.value.issues] == ["recipient", "categories", "purposes"]


def test_history_records_every_version(db: Database) -> None:
    agreed = active(db)
    svc.suspend(db, agreed.id, actor="admin@pirha", reason="data breach review")
    history = svc.agreement_history(db, agreed.id)
    assert [(e.version, e.action, e.status, e.actor) for e in history] == [
        (1, "create", Status.DRAFT, "admin@kela"),
        (2, "approve", Status.PROPOSED, "admin@kela"),
        (3, "approve", Status.ACTIVE, "admin@pirha"),
        (4, "suspend", Status.SUSPENDED, "admin@pirha"),
    ]
    assert history[0].detail["purposes"] == ["concern-notification"]
    assert history[0].detail["legal_basis"]["statute"] == "1301/2014 §35"
    assert history[2].detail == {"as_org": "pirha"}
    assert history[3].detail == {"reason": "data breach review"}
    assert all(a.at <= b.at for a, b in itertools.pairwise(history))
    assert svc.get_agreement(db, agreed.id).version == 4


def test_expiry_is_computed_at_read_time_and_stored_by_the_sweep(db: Database) -> None:
    lapsing = active(db, valid_until=days(30))
    assert lapsing.status is Status.ACTIVE
    assert svc.get_agreement(db, lapsing.id, on_date=days(30)).status is Status.ACTIVE
    assert svc.get_agreement(db, lapsing.id, on_date=days(31)).status is Status.EXPIRED
    assert svc.list_agreements(db, status=Status.EXPIRED) == []
    assert [a.id for a in svc.list_agreements(db, status=Status.EXPIRED, on_date=days(31))] == [
        lapsing.id
    ]
    assert svc.expire_agreements(db, on_date=days(30)) == []
    assert svc.expire_agreements(db, on_date=days(31)) == [lapsing.id]
    assert svc.agreement_history(db, lapsing.id)[-1].action == "expire"
    stored = svc.get_agreement(db, lapsing.id)
    assert stored.status is Status.EXPIRED and stored.version == 4
    assert svc.expire_agreements(db, on_date=days(31)) == []
    with pytest.raises(Conflict):
        svc.terminate(db, lapsing.id, actor="a")


def test_an_agreement_past_valid_until_reads_expired_and_cannot_be_approved(
    db: Database,
) -> None:
    lapsed = svc.create_agreement(db, terms=terms(valid_until=days(-1)), actor="a")
    assert lapsed.status is Status.EXPIRED
    with pytest.raises(Conflict):
        svc.approve(db, lapsed.id, as_org="kela", actor="a")
    assert [a.id for a in svc.list_agreements(db, status=Status.EXPIRED)] == [lapsed.id]


def test_active_agreements_filter_by_date_status_and_parties(db: Database) -> None:
    current = active(db, valid_until=days(100))
    later = active(db, valid_from=days(101), purposes=("social-assistance",))
    suspended = active(db)
    svc.suspend(db, suspended.id, actor="a")
    svc.create_agreement(db, terms=terms(), actor="a")  # draft, never approved
    reverse = svc.create_agreement(db, terms=terms(provider="pirha", recipient="kela"), actor="a")
    svc.approve(db, reverse.id, as_org="pirha", actor="a")
    svc.approve(db, reverse.id, as_org="kela", actor="a")

    def ids(on: date, **kw: str) -> list[str]:
        found = svc.active_agreements(db, provider="kela", recipient="pirha", on_date=on, **kw)
        return sorted(a.id for a in found)

    assert ids(TODAY) == [current.id]
    assert ids(days(100)) == [current.id]
    assert ids(days(101)) == [later.id]
    assert ids(START - timedelta(days=1)) == []
    assert ids(TODAY, resource_type="Task") == [current.id]
    assert ids(TODAY, resource_type="Consent") == []
    assert ids(days(200), purpose="social-assistance") == [later.id]
    assert ids(TODAY, purpose="social-assistance") == []
    reverse_found = svc.active_agreements(db, provider="pirha", recipient="kela", on_date=TODAY)
    assert [a.id for a in reverse_found] == [reverse.id]
    assert (
        svc.active_agreements(db, provider="kela", recipient="etsiva-tampere", on_date=TODAY) == []
    )
    assert current.in_force(TODAY) and not current.in_force(days(101))


def test_list_agreements_filters(db: Database) -> None:
    first = active(db)
    second = svc.create_agreement(db, terms=terms(provider="pirha", recipient="kela"), actor="a")
    third = svc.create_agreement(db, terms=terms(recipient="etsiva-tampere"), actor="a")
    assert [a.id for a in svc.list_agreements(db)] == [first.id, second.id, third.id]
    assert [a.id for a in svc.list_agreements(db, provider="kela")] == [first.id, third.id]
    assert [a.id for a in svc.list_agreements(db, recipient="kela")] == [second.id]
    assert [a.id for a in svc.list_agreements(db, party="pirha")] == [first.id, second.id]
    assert [a.id for a in svc.list_agreements(db, status=Status.ACTIVE)] == [first.id]
