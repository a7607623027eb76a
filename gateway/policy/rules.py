"""The data the access policy reads (``schemas/silta/access-rules.json``): which element
names the client a resource is about, which parameter carries the category agreements
narrow by, which types are directory data, and the redaction rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from schemas import load_json

RULES_FILE = "silta/access-rules.json"
PURPOSE_CODESYSTEM = "silta/CodeSystem-purpose-of-use.json"


@cache
def purposes_of_use() -> dict[str, str]:
    """Codes and displays of the purpose-of-use CodeSystem."""
    codesystem = load_json(PURPOSE_CODESYSTEM)
    return {c["code"]: c["display"] for c in codesystem["concept"]}


def purpose_system() -> str:
    url: str = load_json(PURPOSE_CODESYSTEM)["url"]
    return url


@dataclass(frozen=True, slots=True)
class Redaction:
    """Elements removed from a resource disclosed to another organisation when the rule
    applies: to resources with the category or security label it names, and, with
    ``unless_consent``, only when no Consent of the client permits the disclosure."""

    id: str
    description: str
    resource_type: str
    category: tuple[str, str] | None
    security_label: tuple[str, str] | None
    unless_consent: bool
    remove: tuple[str, ...]

    def matches(
        self,
        resource: dict[str, Any],
        *,
        categories: Callable[[], frozenset[tuple[str, str]]],
        consented: Callable[[], bool],
    ) -> bool:
        """Whether the rule applies; ``categories`` and ``consented`` are asked only when
        they matter."""
        if resource.get("resourceType") != self.resource_type:
            return False
        if self.security_label is not None:
            labels = (resource.get("meta") or {}).get("security") or []
            if not any(_coding_is(c, self.security_label) for c in labels):
                return False
        if self.category is not None and self.category not in categories():
            return False
        return not (self.unless_consent and consented())

    def apply(self, resource: dict[str, Any]) -> None:
        """Removes the rule's elements (dotted paths) from ``resource``, in place."""
        for path in self.remove:
            _remove(resource, path.split("."))


def _coding_is(coding: Any, wanted: tuple[str, str]) -> bool:
    return isinstance(coding, dict) and (coding.get("system"), coding.get("code")) == wanted


def _remove(node: Any, path: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _remove(item, path)
        return
    if not isinstance(node, dict) or path[0] not in node:
        return
    if len(path) == 1:
        del node[path[0]]
    else:
        _remove(node[path[0]], path[1:])


@dataclass(frozen=True, slots=True)
class AccessRules:
    custodian_tag_system: str
    consent_class_system: str
    directory_types: frozenset[str]
    client_parameters: dict[str, str]
    category_parameters: dict[str, str]
    redactions: tuple[Redaction, ...]


def _pair(value: dict[str, str] | None) -> tuple[str, str] | None:
    return None if value is None else (value["system"], value["code"])


@cache
def access_rules() -> AccessRules:
    data: dict[str, Any] = load_json(RULES_FILE)
    return AccessRules(
        custodian_tag_system=data["custodianTagSystem"],
        consent_class_system=data["consentClassSystem"],
        directory_types=frozenset(data["directoryTypes"]["types"]),
        client_parameters=dict(data["clientParameter"]["parameters"]),
        category_parameters=dict(data["categoryParameter"]["parameters"]),
        redactions=tuple(
            Redaction(
                id=rule["id"],
                description=rule["description"],
                resource_type=rule["resourceType"],
                category=_pair(rule.get("category")),
                security_label=_pair(rule.get("securityLabel")),
                unless_consent=bool(rule.get("appliesUnlessConsent", False)),
                remove=tuple(rule["remove"]),
            )
            for rule in data["redactions"]
        ),
    )
