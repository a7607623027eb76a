"""The single access-policy hook point every read, search, include, history and write passes.

Modelled on HAPI FHIR's consent service: the policy is asked at the start of an
operation, whether each resource may be seen (and in which redacted form), and whether
a write may happen. Verdicts are permit / deny with a reason. The default policy
permits everything; the trust layer replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from sqlalchemy import ColumnElement


class Verdict(Enum):
    PERMIT = "permit"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""

    @property
    def permitted(self) -> bool:
        return self.verdict is Verdict.PERMIT


PERMIT = Decision(Verdict.PERMIT, "no restriction")


class AccessPolicy(Protocol):
    """What the service layer asks before any resource is disclosed or written."""

    def search_filter(self, resource_type: str | None) -> Sequence[ColumnElement[bool]]:
        """SQL conditions on the ``resource`` table: rows that may be seen at all."""
        ...

    def can_see(self, resource_type: str, resource: dict[str, Any]) -> Decision: ...

    def will_see(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        """The form of a permitted resource that may be disclosed (redaction)."""
        ...

    def can_write(
        self,
        resource_type: str,
        current: dict[str, Any] | None,
        proposed: dict[str, Any] | None,
    ) -> Decision: ...

    @property
    def inspects_content(self) -> bool:
        """False when no resource needs a per-resource check, on reads or writes (lets
        stored JSON pass without being decoded)."""
        ...


class PermitAll:
    """The policy of an installation without a trust layer: everything is permitted."""

    inspects_content = False

    def search_filter(self, resource_type: str | None) -> Sequence[ColumnElement[bool]]:
        return ()

    def can_see(self, resource_type: str, resource: dict[str, Any]) -> Decision:
        return PERMIT

    def will_see(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        return resource

    def can_write(
        self,
        resource_type: str,
        current: dict[str, Any] | None,
        proposed: dict[str, Any] | None,
    ) -> Decision:
        return PERMIT
