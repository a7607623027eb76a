"""The trust layer's AccessPolicy: agreements and consents enforced for one requester."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from functools import cache, partial
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import ColumnElement, FromClause

from gateway.admin.agreements import Agreement
from gateway.admin.agreements import changes as agreement_changes
from gateway.policy import Decision, Requester, Touched, Verdict
from gateway.policy.engine import (
    CUSTODIAN,
    DIRECTORY,
    ConsentGrant,
    GrantCache,
    ResourceFacts,
    agreements_fingerprint,
    agreements_for,
    decide,
    grants_for,
    own_or_directory,
    redact,
    today,
    visibility_condition,
)
from gateway.policy.rules import access_rules
from gateway.store.database import Database
from gateway.store.repository import KeyedVisibility, Visibility
from gateway.store.schema import resource

AGREEMENT_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class _InForce:
    """The agreements in force for one recipient and day, and the (provider, type) pairs
    they narrow by category."""

    agreements: list[Agreement]
    narrowed: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, agreements: list[Agreement]) -> _InForce:
        narrowed = frozenset(
            (a.provider, c.resource_type) for a in agreements for c in a.categories if c.system
        )
        return cls(agreements, narrowed)


@dataclass
class _AgreementCache:
    by_key: dict[tuple[str, date], _InForce] = field(default_factory=dict)
    fingerprint: tuple[Any, ...] = ()
    local_changes: int = -1
    checked_at: float = 0.0


_AGREEMENT_CACHE: WeakKeyDictionary[Database, _AgreementCache] = WeakKeyDictionary()


# The visibility condition on ``resource`` built once per requester, purpose, agreements
# and second (building the expression costs more than running it).
_CONDITIONS: dict[
    tuple[str, str | None, int, int, str | None], tuple[list[Agreement], ColumnElement[bool]]
] = {}


@cache
def _redaction_markers() -> dict[str, tuple[bytes | None, ...]]:
    """Per type, the JSON-encoded code each redaction rule needs in a resource (None: the
    rule may apply to any resource of the type)."""
    markers: dict[str, list[bytes | None]] = {}
    for rule in access_rules().redactions:
        needed = rule.security_label or rule.category
        markers.setdefault(rule.resource_type, []).append(
            None if needed is None else orjson.dumps(needed[1])
        )
    return {type_: tuple(found) for type_, found in markers.items()}


def _load_grants(db: Database, organization: str, client: str) -> list[ConsentGrant]:
    with db.read_raw() as raw:
        return grants_for(raw, client, organization)


@dataclass
class TrustPolicy:
    """Decisions for one request of ``requester`` at time ``now`` (µs, taken to the
    second: consent periods are compared at that precision)."""

    db: Database
    requester: Requester
    now: int
    touched: list[Touched] = field(default_factory=list)
    _grants: GrantCache | None = field(default=None, init=False, repr=False)
    _in_force: _InForce | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.now -= self.now % 1_000_000

    @property
    def agreements(self) -> list[Agreement]:
        return self.in_force.agreements

    @property
    def in_force(self) -> _InForce:
        """The agreements in force with the requester as recipient, from a per-process
        cache. A change made by this process is seen at once; one made by another process
        (the CLI, another worker) within ``AGREEMENT_RECHECK_SECONDS``, when the table's
        fingerprint (row count, latest change) is read again."""
        if self._in_force is not None:
            return self._in_force
        key = (self.requester.organization, today(self.now))
        cache = _AGREEMENT_CACHE.setdefault(self.db, _AgreementCache())
        local = agreement_changes()
        clock = time.monotonic()
        if local != cache.local_changes or clock - cache.checked_at > AGREEMENT_RECHECK_SECONDS:
            with self.db.read_raw() as raw:
                fingerprint = agreements_fingerprint(raw)
            if fingerprint != cache.fingerprint:
                cache.by_key.clear()
                cache.fingerprint = fingerprint
            cache.local_changes, cache.checked_at = local, clock
        found = cache.by_key.get(key)
        if found is None:
            with self.db.read_raw() as raw:
                found = _InForce.of(agreements_for(raw, *key))
            if len(cache.by_key) > 10_000:
                cache.by_key.clear()
            cache.by_key[key] = found
        self._in_force = found
        return found

    @property
    def grants(self) -> GrantCache:
        if self._grants is None:
            # A function of the database and organisation, not a bound method: the policy
            # and its cache must not form a reference cycle, or every request leaves
            # garbage for the cyclic collector.
            self._grants = GrantCache(partial(_load_grants, self.db, self.requester.organization))
        return self._grants

    @property
    def custodian(self) -> str | None:
        return self.requester.organization

    def visibility(self) -> Visibility | None:
        organization, purpose, now = self.requester.organization, self.requester.purpose, self.now
        agreements = self.agreements

        def condition(res: FromClause, resource_type: str | None) -> ColumnElement[bool]:
            if res is not resource:
                return visibility_condition(
                    res,
                    organization=organization,
                    purpose=purpose,
                    agreements=agreements,
                    now=now,
                    resource_type=resource_type,
                )
            key = (organization, purpose, id(agreements), now, resource_type)
            cached = _CONDITIONS.get(key)
            if cached is None or cached[0] is not agreements:
                built = visibility_condition(
                    resource,
                    organization=organization,
                    purpose=purpose,
                    agreements=agreements,
                    now=now,
                    resource_type=resource_type,
                )
                if len(_CONDITIONS) > 1000:
                    _CONDITIONS.clear()
                cached = _CONDITIONS[key] = (agreements, built)
            return cached[1]

        # The conditions depend on nothing else, and on the clock only through consent
        # periods. The agreements are the cache's own object, kept alive by every holder
        # of the key, so their id is not reused.
        clock = now if any(a.consent_required for a in agreements) else None
        return KeyedVisibility((organization, purpose, clock, id(agreements)), condition)

    def decide(self, facts: ResourceFacts) -> Decision:
        return decide(
            organization=self.requester.organization,
            purpose=self.requester.purpose,
            facts=facts,
            agreements=self.agreements,
            grants=self.grants,
            now=self.now,
        )

    def disclose(
        self, res_type: str, res_id: str, custodian: str | None, client: str | None, body: bytes
    ) -> bytes | dict[str, Any] | None:
        decision = own_or_directory(
            self.requester.organization, res_type, custodian, access_rules()
        )
        resource: dict[str, Any] | None = None
        if decision is None:
            if self._needs_content(res_type, custodian, body):
                resource = orjson.loads(body)
            decision = self.decide(ResourceFacts(res_type, res_id, custodian, client, resource))
        self.touched.append(Touched(res_type, res_id, custodian, client, decision))
        if not decision.permitted:
            return None
        if resource is not None and decision.redactions:
            return redact(resource, decision.redactions)
        return body

    def _needs_content(self, res_type: str, custodian: str | None, body: bytes) -> bool:
        """Whether deciding needs the parsed resource: an agreement from its custodian
        narrows the type by category, or a redaction rule for the type may apply (its
        category or security-label code occurs in the stored JSON)."""
        if (custodian, res_type) in self.in_force.narrowed:
            return True
        return any(
            marker is None or marker in body for marker in _redaction_markers().get(res_type, ())
        )

    def check_write(
        self,
        res_type: str,
        res_id: str,
        current_custodian: str | None,
        current: dict[str, Any] | None,
        client: str | None,
    ) -> Decision:
        """A new resource is the requester's own; another organisation's needs an
        agreement in force that grants write for its category and the purpose."""
        if current is None or current_custodian == self.requester.organization:
            decision = Decision(Verdict.PERMIT, "the requester is the custodian", CUSTODIAN)
        else:
            writable = [a for a in self.agreements if a.write_allowed]
            decision = decide(
                organization=self.requester.organization,
                purpose=self.requester.purpose,
                facts=ResourceFacts(res_type, res_id, current_custodian, client, current),
                agreements=writable,
                grants=self.grants,
                now=self.now,
            )
            if decision.rule == DIRECTORY:
                decision = Decision(
                    Verdict.DENY, f"{res_type} is directory data of another organisation"
                )
        return decision


def explain(
    db: Database, *, organization: str, res_type: str, res_id: str, purpose: str | None, now: int
) -> dict[str, Any]:
    """Why ``organization`` may or may not see ``res_type/res_id`` for ``purpose`` now:
    the decision with its rule, agreement, consent and redactions, and the facts it
    rested on (``GET /admin/api/decisions/explain``)."""
    from gateway.errors import NotFound
    from gateway.store import repository
    from gateway.store.raw import RawExecutor

    with db.read() as conn:
        stored = repository.get_current(RawExecutor.of(conn), res_type, res_id)
    if stored is None or stored.body is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    policy = TrustPolicy(db, Requester("explain", organization, purpose), now)
    decision = policy.decide(
        ResourceFacts(res_type, res_id, stored.custodian, stored.client, orjson.loads(stored.body))
    )
    return {
        "requester": organization,
        "resource": f"{res_type}/{res_id}",
        "purpose": purpose,
        "custodian": stored.custodian,
        "client": f"Patient/{stored.client}" if stored.client else None,
        **decision.to_json(),
    }
