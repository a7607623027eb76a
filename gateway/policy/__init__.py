"""The single access-policy hook point every read, search, include, history and write passes.

Modelled on HAPI FHIR's consent service: the policy gives a SQL condition for the rows a
requester may see at all (searches, includes, chains, counts, history), decides for each
resource it discloses whether and in which (redacted) form it may leave its custodian,
and whether a write may happen; every verdict carries its reason. The default policy
permits everything (an installation without the trust layer); ``gateway.policy.trust``
enforces agreements and consents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from gateway.store.repository import Visibility


class Verdict(Enum):
    PERMIT = "permit"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict with its reason: the rule that decided and what it rested on."""

    verdict: Verdict
    reason: str = ""
    rule: str = ""
    agreement_id: str | None = None
    consent_id: str | None = None
    legal_basis: str | None = None
    redactions: tuple[str, ...] = ()

    @property
    def permitted(self) -> bool:
        return self.verdict is Verdict.PERMIT

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.verdict.value,
            "rule": self.rule,
            "reason": self.reason,
            "agreement": self.agreement_id,
            "consent": self.consent_id,
            "legal_basis": self.legal_basis,
            "redactions": list(self.redactions),
        }


PERMIT = Decision(Verdict.PERMIT, "no restriction")


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks: a registered client of an organisation, for a purpose of use."""

    client_id: str
    organization: str
    purpose: str | None
    scopes: tuple[str, ...] = ()
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Touched:
    """A resource a request disclosed or wrote, with the decision that let it (access and
    disclosure logs)."""

    res_type: str
    res_id: str
    custodian: str | None
    client: str | None
    decision: Decision


class AccessPolicy(Protocol):
    """What the service layer asks before any resource is disclosed or written."""

    touched: list[Touched]

    @property
    def requester(self) -> Requester | None:
        """Who asks; None when the gateway runs without authentication."""
        ...

    def visibility(self) -> Visibility | None:
        """The SQL condition on a ``resource`` row (or alias) that it may be seen at all."""
        ...

    def disclose(
        self, res_type: str, res_id: str, custodian: str | None, client: str | None, body: bytes
    ) -> bytes | dict[str, Any] | None:
        """The form of a stored resource that may be disclosed: the stored bytes, a
        redacted copy, or None when it may not be seen."""
        ...

    def check_write(
        self,
        res_type: str,
        res_id: str,
        current_custodian: str | None,
        current: dict[str, Any] | None,
        client: str | None,
    ) -> Decision: ...

    @property
    def custodian(self) -> str | None:
        """The custodian of a resource this requester creates."""
        ...


@dataclass
class PermitAll:
    """The policy of an installation without a trust layer, and of the gateway's own
    writes (``owner``: the custodian of what it creates): everything is permitted."""

    requester: Requester | None = None
    touched: list[Touched] = field(default_factory=list)
    owner: str | None = None

    def visibility(self) -> Visibility | None:
        return None

    def disclose(
        self, res_type: str, res_id: str, custodian: str | None, client: str | None, body: bytes
    ) -> bytes | dict[str, Any] | None:
        return body

    def check_write(
        self,
        res_type: str,
        res_id: str,
        current_custodian: str | None,
        current: dict[str, Any] | None,
        client: str | None,
    ) -> Decision:
        return PERMIT

    @property
    def custodian(self) -> str | None:
        return self.owner
