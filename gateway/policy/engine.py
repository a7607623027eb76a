"""The access policy of the trust layer: one decision for every disclosure and write.

A requester (an organisation, through its registered client, for a purpose of use) may
see a resource when

1. its organisation is the resource's custodian (the data controller), or
2. the resource is directory data (organisations and their staff), or
3. an agreement in force from the custodian to the requester covers the resource's
   type (and category, when the agreement narrows it) and the purpose, and — when the
   agreement requires the client's consent — an active Consent of the client permits
   the requester's organisation, that purpose and that class of data now, and no active
   Consent denies it (deny beats permit; consent.html §2.1.3.2).

The same rule is compiled twice: to a SQL condition on ``resource`` rows (searches,
includes, chains, counts, history) and to a per-resource decision with its reason
(reads, writes, explanations). Tests compare both against a plain reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    and_,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
    true,
)

from gateway.admin.agreements import Agreement, Status, agreement_from_row
from gateway.admin.schema import agreement as agreement_table
from gateway.policy import Decision, Verdict
from gateway.policy.facts import ANY, DENY, PERMIT, category_tokens
from gateway.policy.rules import AccessRules, Redaction, access_rules
from gateway.store.raw import RawExecutor, RawStatement
from gateway.store.schema import consent_grant, resource, sp_token

CUSTODIAN = "custodian"
DIRECTORY = "directory"
AGREEMENT = "agreement"
AGREEMENT_AND_CONSENT = "agreement-and-consent"


@dataclass(frozen=True)
class ResourceFacts:
    """What a decision looks at: type, custodian, client and (lazily) categories."""

    res_type: str
    res_id: str
    custodian: str | None
    client: str | None
    resource: dict[str, Any] | None = None

    @cached_property
    def category_codes(self) -> frozenset[tuple[str, str]]:
        return frozenset() if self.resource is None else category_tokens(self.resource)

    def categories(self) -> frozenset[tuple[str, str]]:
        return self.category_codes


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    """One row of ``sp_consent_grant``."""

    consent_id: str
    actor: str
    purpose: str
    data_class: str
    effect: str
    period_low: int | None
    period_high: int | None

    def applies(self, organization: str, purpose: str, data_class: str, now: int) -> bool:
        return (
            self.actor in (organization, ANY)
            and self.purpose in (purpose, ANY)
            and self.data_class in (data_class, ANY)
            and (self.period_low is None or self.period_low <= now)
            and (self.period_high is None or now < self.period_high)
        )


def _category_matches(agreement: Agreement, facts: ResourceFacts) -> bool:
    categories: frozenset[tuple[str, str]] | None = None
    for category in agreement.categories:
        if category.resource_type != facts.res_type:
            continue
        if category.system is None:
            return True
        if categories is None:
            categories = facts.categories()
        if (category.system, category.code) in categories:
            return True
    return False


def consent_verdict(
    grants: Sequence[ConsentGrant], organization: str, purpose: str, data_class: str, now: int
) -> tuple[str | None, str | None]:
    """(id of a Consent that permits, id of one that denies) — either may be None."""
    permit = deny = None
    for grant in grants:
        if grant.applies(organization, purpose, data_class, now):
            if grant.effect == DENY:
                deny = deny or grant.consent_id
            elif grant.effect == PERMIT:
                permit = permit or grant.consent_id
    return permit, deny


def own_or_directory(
    organization: str, res_type: str, custodian: str | None, rules: AccessRules
) -> Decision | None:
    """The permits that need no agreement: the requester's own data and directory data."""
    if custodian is not None and custodian == organization:
        return Decision(Verdict.PERMIT, "the requester is the custodian", CUSTODIAN)
    if res_type in rules.directory_types:
        return Decision(Verdict.PERMIT, f"{res_type} is directory data", DIRECTORY)
    return None


def decide(
    *,
    organization: str,
    purpose: str | None,
    facts: ResourceFacts,
    agreements: Sequence[Agreement],
    grants: Callable[[str], Sequence[ConsentGrant]],
    now: int,
    rules: AccessRules | None = None,
) -> Decision:
    """The decision for disclosing one resource to ``organization`` (see module doc).

    ``agreements`` are those in force with ``organization`` as recipient; ``grants``
    gives the Consent grants of a client.
    """
    rules = rules or access_rules()
    without_agreement = own_or_directory(organization, facts.res_type, facts.custodian, rules)
    if without_agreement is not None:
        return without_agreement
    if facts.custodian is None:
        return Decision(Verdict.DENY, "the resource has no custodian", AGREEMENT)
    if purpose is None:
        return Decision(Verdict.DENY, "no purpose of use was stated", AGREEMENT)
    covering = [
        a
        for a in agreements
        if a.provider == facts.custodian
        and a.recipient == organization
        and purpose in a.purposes
        and _category_matches(a, facts)
    ]
    if not covering:
        return Decision(
            Verdict.DENY,
            f"no agreement in force from {facts.custodian} to {organization} covers "
            f"{facts.res_type} for purpose {purpose}",
            AGREEMENT,
        )
    verdict: tuple[str | None, str | None] | None = None

    def consent() -> tuple[str | None, str | None]:
        """(a Consent that permits, one that denies), looked up once and only if needed."""
        nonlocal verdict
        if verdict is None:
            client_grants = grants(facts.client) if facts.client else ()
            verdict = consent_verdict(client_grants, organization, purpose, facts.res_type, now)
        return verdict

    def consented() -> bool:
        permit_id, deny_id = consent()
        return permit_id is not None and deny_id is None

    for agreement in covering:
        if not agreement.consent_required:
            return _permit(agreement, AGREEMENT, None, consented, facts, rules)
    agreement = covering[0]
    permit_id, deny_id = consent()
    if deny_id is not None:
        return Decision(
            Verdict.DENY,
            f"agreement {agreement.id} requires consent and Consent/{deny_id} denies it",
            AGREEMENT_AND_CONSENT,
            agreement_id=agreement.id,
            consent_id=deny_id,
        )
    if permit_id is None:
        return Decision(
            Verdict.DENY,
            f"agreement {agreement.id} requires the client's consent and no active Consent "
            f"permits {organization} for {purpose}",
            AGREEMENT_AND_CONSENT,
            agreement_id=agreement.id,
        )
    return _permit(agreement, AGREEMENT_AND_CONSENT, permit_id, lambda: True, facts, rules)


def _permit(
    agreement: Agreement,
    rule: str,
    consent_id: str | None,
    consented: Callable[[], bool],
    facts: ResourceFacts,
    rules: AccessRules,
) -> Decision:
    redactions: tuple[Redaction, ...] = ()
    if facts.resource is not None:
        redactions = tuple(
            r
            for r in rules.redactions
            if r.resource_type == facts.res_type
            and r.matches(facts.resource, categories=facts.categories, consented=consented)
        )
    return _permit_decision(
        agreement.id,
        agreement.legal_basis.statute,
        rule,
        consent_id,
        tuple(r.id for r in redactions),
    )


@lru_cache(maxsize=4096)
def _permit_decision(
    agreement_id: str,
    statute: str,
    rule: str,
    consent_id: str | None,
    redactions: tuple[str, ...],
) -> Decision:
    """Decisions are immutable values: the same grounds give the same object."""
    return Decision(
        Verdict.PERMIT,
        f"agreement {agreement_id}"
        + (f" and Consent/{consent_id}" if consent_id else "")
        + f" ({statute})",
        rule,
        agreement_id=agreement_id,
        consent_id=consent_id,
        legal_basis=statute,
        redactions=redactions,
    )


def redact(resource: dict[str, Any], redaction_ids: Sequence[str]) -> dict[str, Any]:
    """Removes the elements of the named redaction rules from ``resource`` (a private
    copy, parsed for this disclosure) and returns it."""
    for rule in access_rules().redactions:
        if rule.id in redaction_ids:
            rule.apply(resource)
    return resource


# --------------------------------------------------------------------------- SQL


def _grant_exists(
    res: FromClause, organization: str, purpose: str, data_class: str, effect: str, now: int
) -> ColumnElement[bool]:
    g = consent_grant.c
    return exists(
        select(g.resource_pk).where(
            g.patient_id == res.c.client,
            g.actor.in_((organization, ANY)),
            g.effect == effect,
            g.purpose.in_((purpose, ANY)),
            g.data_class.in_((data_class, ANY)),
            or_(g.period_low.is_(None), g.period_low <= now),
            or_(g.period_high.is_(None), g.period_high > now),
        )
    )


def _type_in(res: FromClause, types: Iterable[str]) -> ColumnElement[bool]:
    """``res_type`` is one of ``types``, as ORed equalities: an expanding ``IN`` list is
    re-rendered on every execution, which costs more than the whole check."""
    return or_(false(), *(res.c.res_type == t for t in sorted(types)))


def visibility_condition(
    res: FromClause,
    *,
    organization: str,
    purpose: str | None,
    agreements: Sequence[Agreement],
    now: int,
    resource_type: str | None = None,
    rules: AccessRules | None = None,
) -> ColumnElement[bool]:
    """The SQL form of ``decide``'s verdict for a row of ``res`` (``resource`` or an
    alias); ``resource_type``, when the rows are all of one type, leaves out every clause
    about other types."""
    rules = rules or access_rules()
    if resource_type in rules.directory_types:
        return true()
    alternatives: list[ColumnElement[bool]] = [res.c.custodian == organization]
    if resource_type is None:
        alternatives.append(_type_in(res, rules.directory_types))
    # Whole types shared without consent: one ``custodian = P AND res_type IN (…)`` per
    # provider; narrowed categories and consent checks need a clause each.
    plain_types: dict[str, set[str]] = {}
    for agreement in agreements:
        if purpose is None or purpose not in agreement.purposes:
            continue
        if agreement.recipient != organization:
            continue
        for category in agreement.categories:
            if resource_type is not None and category.resource_type != resource_type:
                continue
            if category.system is None and not agreement.consent_required:
                plain_types.setdefault(agreement.provider, set()).add(category.resource_type)
                continue
            conditions: list[ColumnElement[bool]] = [
                res.c.custodian == agreement.provider,
                res.c.res_type == category.resource_type,
            ]
            param = rules.category_parameters.get(category.resource_type)
            if category.system is not None:
                if param is None:
                    continue
                conditions.append(
                    exists(
                        select(sp_token.c.resource_pk).where(
                            sp_token.c.resource_pk == res.c.pk,
                            sp_token.c.param == param,
                            sp_token.c.system == category.system,
                            sp_token.c.code == category.code,
                        )
                    )
                )
            if agreement.consent_required:
                conditions.append(
                    _grant_exists(res, organization, purpose, category.resource_type, PERMIT, now)
                )
                conditions.append(
                    ~_grant_exists(res, organization, purpose, category.resource_type, DENY, now)
                )
            alternatives.append(and_(*conditions))
    if resource_type is not None:
        alternatives.extend(res.c.custodian == provider for provider in sorted(plain_types))
    else:
        alternatives.extend(
            and_(res.c.custodian == provider, _type_in(res, types))
            for provider, types in sorted(plain_types.items())
        )
    return or_(false(), *alternatives)


# --------------------------------------------------------------------------- loading

_a = agreement_table.c
_AGREEMENTS_IN_FORCE = RawStatement(
    select(agreement_table).where(
        _a.recipient == bindparam("organization"),
        _a.status == bindparam("status"),
        _a.valid_from <= bindparam("on"),
        or_(_a.valid_until.is_(None), _a.valid_until >= bindparam("on")),
    )
)
# Changes to any agreement change this: every change bumps its row's updated_at.
_AGREEMENTS_FINGERPRINT = RawStatement(select(func.count(), func.max(_a.updated_at)))
_g = consent_grant.c
_GRANTS = RawStatement(
    select(
        resource.c.res_id,
        _g.actor,
        _g.purpose,
        _g.data_class,
        _g.effect,
        _g.period_low,
        _g.period_high,
    )
    .join(resource, resource.c.pk == _g.resource_pk)
    .where(
        _g.patient_id == bindparam("client"),
        or_(_g.actor == bindparam("organization"), _g.actor == bindparam("any")),
    )
)


def agreements_for(db: RawExecutor, organization: str, on: date) -> list[Agreement]:
    """The agreements in force on ``on`` with ``organization`` as recipient."""
    columns = [c.name for c in agreement_table.columns]
    day = on.isoformat() if db.dialect.name == "sqlite" else on
    rows = db.fetchall(
        _AGREEMENTS_IN_FORCE,
        {"organization": organization, "on": day, "status": Status.ACTIVE.value},
    )
    found = (agreement_from_row(dict(zip(columns, row, strict=True)), on) for row in rows)
    return [a for a in found if a.in_force(on)]


def agreements_fingerprint(db: RawExecutor) -> tuple[Any, ...]:
    row = db.fetchone(_AGREEMENTS_FINGERPRINT, {})
    return tuple(row) if row is not None else ()


def grants_for(db: RawExecutor, client: str, organization: str) -> list[ConsentGrant]:
    """The Consent grants of a client that name ``organization`` or any actor."""
    rows = db.fetchall(_GRANTS, {"client": client, "organization": organization, "any": ANY})
    return [ConsentGrant(*row) for row in rows]


def today(now_micros: int) -> date:
    return datetime.fromtimestamp(now_micros / 1_000_000, UTC).date()


@dataclass
class GrantCache:
    """Consent grants looked up once per client within one request."""

    load: Callable[[str], list[ConsentGrant]]
    cached: dict[str, list[ConsentGrant]] = field(default_factory=dict)

    def __call__(self, client: str) -> list[ConsentGrant]:
        if client not in self.cached:
            self.cached[client] = self.load(client)
        return self.cached[client]
