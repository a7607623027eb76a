"""SMART scopes for backend services (SMART App Launch v2.2, "Scopes and Launch
Context": https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

Only the ``system/`` context exists for backend services. Both syntaxes are read:

- v2: ``system/<Type|*>.<cruds>`` where the permissions are a non-empty subset of
  ``c r u d s`` written in that order, optionally followed by ``?param=value``;
- v1: ``system/<Type|*>.<read|write|*>`` with read = ``rs``, write = ``cud`` and
  ``*`` = ``cruds``.

The query part of a v2 scope (finer-grained constraints) is not enforced by this
gateway: it is dropped when scopes are granted, so the granted scope string says
what is actually allowed, and registered scopes may not carry one (a registration
must never promise a restriction that would not be applied).

``admin`` is the gateway's own scope for its administration APIs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

ADMIN_SCOPE = "admin"
PERMISSION_ORDER = "cruds"
INTERACTIONS = {
    "create": "c",
    "read": "r",
    "update": "u",
    "delete": "d",
    "search": "s",
}
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}

_SCOPE = re.compile(
    r"^system/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<perm>[a-z*]+)(?:\?(?P<query>.*))?$"
)


class ScopeError(ValueError):
    """A scope string that is not a supported SMART system scope."""


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One parsed ``system/`` scope."""

    resource_type: str  # a FHIR resource type or "*"
    permissions: frozenset[str]  # letters of "cruds"
    query: str | None = None
    version: int = 2

    def covers(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)

    def render(self) -> str:
        """The v2 form without query, e.g. ``system/Task.rs``."""
        letters = "".join(p for p in PERMISSION_ORDER if p in self.permissions)
        return f"system/{self.resource_type}.{letters}"


def parse_scope(text: str) -> ResourceScope:
    """Parses one ``system/`` scope (v1 or v2); raises ScopeError otherwise."""
    match = _SCOPE.match(text)
    if match is None:
        raise ScopeError(f"not a SMART system scope: {text!r}")
    resource_type, perm, query = match.group("type"), match.group("perm"), match.group("query")
    if perm in V1_PERMISSIONS:
        if query is not None:
            raise ScopeError(f"SMART v1 scopes take no query part: {text!r}")
        return ResourceScope(resource_type, frozenset(V1_PERMISSIONS[perm]), None, 1)
    position = -1
    for letter in perm:
        index = PERMISSION_ORDER.find(letter)
        if index <= position:
            raise ScopeError(f"permissions of {text!r} must be a subset of 'cruds' in that order")
        position = index
    return ResourceScope(resource_type, frozenset(perm), query or None, 2)


def split_scopes(scopes: str | Iterable[str]) -> list[str]:
    """A space-delimited scope string (RFC 6749 §3.3) or an iterable, as a list."""
    if isinstance(scopes, str):
        return scopes.split()
    return [s for item in scopes for s in item.split()]


def validate_registered_scopes(scopes: str | Iterable[str]) -> list[str]:
    """Checks the scopes a client is registered with; returns them de-duplicated.

    Raises ScopeError for an unknown scope or one with a query part.
    """
    result: list[str] = []
    for text in split_scopes(scopes):
        if text != ADMIN_SCOPE:
            parsed = parse_scope(text)
            if parsed.query is not None:
                raise ScopeError(
                    f"{text!r}: query-restricted scopes are not enforced, so they cannot be "
                    "registered; register the unrestricted scope instead"
                )
        if text not in result:
            result.append(text)
    return result


def _parse_all(scopes: Iterable[str]) -> list[ResourceScope]:
    parsed: list[ResourceScope] = []
    for text in scopes:
        if text == ADMIN_SCOPE:
            continue
        try:
            parsed.append(parse_scope(text))
        except ScopeError:
            continue
    return parsed


def grant_scopes(requested: str | Iterable[str], registered: str | Iterable[str]) -> list[str]:
    """The scopes to grant: the intersection of what is requested and registered.

    Computed per resource type and permission: a registered ``system/*.cruds``
    grants a requested ``system/Task.rs``; a requested ``system/*.rs`` against a
    registered ``system/Task.r`` grants ``system/Task.r``. Unknown or unsupported
    requested scopes are left out (RFC 6749 §3.3 lets the server grant less).
    A requested scope that comes out unchanged keeps its v1 or v2 spelling.
    """
    requested_list = split_scopes(requested)
    registered_list = split_scopes(registered)
    granted_parsed = _parse_all(registered_list)
    wildcard_registered = frozenset(
        p for g in granted_parsed if g.resource_type == "*" for p in g.permissions
    )
    by_type: dict[str, set[str]] = {}
    spelled: dict[str, str] = {}
    for text in requested_list:
        if text == ADMIN_SCOPE:
            continue
        try:
            want = parse_scope(text)
        except ScopeError:
            continue
        if want.resource_type == "*":
            allowed = want.permissions & wildcard_registered
            if allowed:
                by_type.setdefault("*", set()).update(allowed)
                if allowed == want.permissions and want.query is None:
                    spelled.setdefault("*", text)
            for g in granted_parsed:
                if g.resource_type != "*":
                    extra = want.permissions & g.permissions
                    if extra:
                        by_type.setdefault(g.resource_type, set()).update(extra)
        else:
            allowed = want.permissions & frozenset(
                p for g in granted_parsed if g.covers(want.resource_type) for p in g.permissions
            )
            if allowed:
                by_type.setdefault(want.resource_type, set()).update(allowed)
                if allowed == want.permissions and want.query is None:
                    spelled.setdefault(want.resource_type, text)
    wildcard = frozenset(by_type.get("*", set()))
    result: list[str] = []
    for resource_type in sorted(by_type, key=lambda t: (t != "*", t)):
        permissions = frozenset(by_type[resource_type])
        if resource_type != "*":
            permissions = permissions - wildcard
            if not permissions:
                continue
        original = spelled.get(resource_type)
        if original is not None and parse_scope(original).permissions == permissions:
            result.append(original)
        else:
            result.append(ResourceScope(resource_type, permissions).render())
    if ADMIN_SCOPE in requested_list and ADMIN_SCOPE in registered_list:
        result.append(ADMIN_SCOPE)
    return result


def permits(granted: str | Iterable[str], resource_type: str, interaction: str) -> bool:
    """Whether the granted scopes allow ``interaction`` on ``resource_type``.

    ``interaction`` is create, read, update, delete or search, or its letter
    (c r u d s). ``r`` covers read, vread and instance history; ``s`` covers search
    and type/system history (SMART v2 scopes, "Scopes for requesting FHIR resources").
    """
    letter = INTERACTIONS.get(interaction, interaction)
    if len(letter) != 1 or letter not in PERMISSION_ORDER:
        raise ValueError(f"unknown interaction: {interaction!r}")
    scopes = granted if isinstance(granted, tuple) else tuple(split_scopes(granted))
    return any(s.covers(resource_type) and letter in s.permissions for s in _parsed(scopes))


@lru_cache(maxsize=1024)
def _parsed(scopes: tuple[str, ...]) -> tuple[ResourceScope, ...]:
    """The resource scopes of a granted set (the same few sets on every request)."""
    return tuple(_parse_all(split_scopes(scopes)))


def has_admin(granted: str | Iterable[str]) -> bool:
    """Whether ``admin`` is among the granted scopes."""
    return ADMIN_SCOPE in split_scopes(granted)
