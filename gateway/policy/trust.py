"""The trust layer's AccessPolicy: agreements and consents enforced for one requester."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import ColumnElement, FromClause

from gateway.admin.agreements import Agreement
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
    redact,
    today,
    visibility_condition,
)
from gateway.policy.rules import access_rules
from gateway.store.database import Database
from gateway.store.repository import Visibility
from gateway.store.schema import resource

_AGREEMENT_CACHE: WeakKeyDictionary[
    Database, dict[tuple[str, date], tuple[tuple[Any, ...], list[Agreement]]]
] = WeakKeyDictionary()


# The visibility condition on ``resource`` built once per requester, purpose, agreements
# and second (building the expression costs more than running it).
_CONDITIONS: dict[
    tuple[str, str | None, int, int], tuple[list[Agreement], ColumnElement[bool]]
] = {}


@dataclass
class TrustPolicy:
    """Decisions for one request of ``requester`` at time ``now`` (µs, taken to the
    second: consent periods are compared at that precision)."""

    db: Database
    requester: Requester
    now: int
    touched: list[Touched] = field(default_factory=list)
    _grants: GrantCache | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.now -= self.now % 1_000_000

    @cached_property
    def agreements(self) -> list[Agreement]:
        """The agreements in force with the requester as recipient: from a per-process
        cache that one cheap query per request keeps exact (any change to any agreement
        changes the table's fingerprint)."""
        key = (self.requester.organization, today(self.now))
        cache = _AGREEMENT_CACHE.setdefault(self.db, {})
        with self.db.read_raw() as raw:
            fingerprint = agreements_fingerprint(raw)
            hit = cache.get(key)
            if hit is not None and hit[0] == fingerprint:
                return hit[1]
            found = agreements_for(raw, *key)
        if len(cache) > 10_000:
            cache.clear()
        cache[key] = (fingerprint, found)
        return found

    def _load_grants(self, client: str) -> list[ConsentGrant]:
        with self.db.read_raw() as raw:
            return grants_for(raw, client, self.requester.organization)

    @property
    def grants(self) -> GrantCache:
        if self._grants is None:
            self._grants = GrantCache(self._load_grants)
        return self._grants

    @property
    def custodian(self) -> str | None:
        return self.requester.organization

    def visibility(self) -> Visibility | None:
        organization, purpose, now = self.requester.organization, self.requester.purpose, self.now
        agreements = self.agreements
        key = (organization, purpose, id(agreements), now)
        cached = _CONDITIONS.get(key)
        if cached is None or cached[0] is not agreements:
            built = visibility_condition(
                resource, organization=organization, purpose=purpose, agreements=agreements, now=now
            )
            if len(_CONDITIONS) > 1000:
                _CONDITIONS.clear()
            cached = _CONDITIONS[key] = (agreements, built)
        on_resource = cached[1]

        def condition(res: FromClause) -> ColumnElement[bool]:
            if res is resource:
                return on_resource
            return visibility_condition(
                res, organization=organization, purpose=purpose, agreements=agreements, now=now
            )

        return condition

    def decide(self, facts: ResourceFacts) -> Decision:
        return decide(
            organization=self.requester.organization,
            purpose=self.requester.purpose,
            facts=facts,
            agreements=self.agreements,
            grants=self.grants,
            now=self.now,
        )

    def _own_or_directory(self, res_type: str, custodian: str | None) -> Decision | None:
        if custodian is not None and custodian == self.requester.organization:
            return Decision(Verdict.PERMIT, "the requester is the custodian", CUSTODIAN)
        if res_type in access_rules().directory_types:
            return Decision(Verdict.PERMIT, f"{res_type} is directory data", DIRECTORY)
        return None

    def disclose(
        self, res_type: str, res_id: str, custodian: str | None, client: str | None, body: bytes
    ) -> bytes | dict[str, Any] | None:
        decision = self._own_or_directory(res_type, custodian)
        resource: dict[str, Any] | None = None
        if decision is None:
            resource = orjson.loads(body)
            decision = self.decide(ResourceFacts(res_type, res_id, custodian, client, resource))
        self.touched.append(Touched(res_type, res_id, custodian, client, decision))
        if not decision.permitted:
            return None
        if resource is not None and decision.redactions:
            return redact(resource, decision.redactions)
        return body

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
