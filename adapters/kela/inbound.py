"""Kela → gateway: a message body becomes a FHIR R4 transaction Bundle.

The SOAP layer hands over the body element of an X-Road request (X-Road message
protocol 4.0 §2.3: the body element is named after the service code). It is checked
against its namespace and XSD, mapped by ``mappings/kela/<message>.inbound.json``,
and returned as a ``transaction`` Bundle (R4 bundle.html, http.html §3.1.0.11) with
the facts the endpoint needs. Nothing is stored here.

Bundle conventions: the Patient is a conditional create on the HETU (``ifNoneExist``,
http.html §3.1.0.8.1); every other resource is a PUT of an id derived from Kela's
identifier, so a re-delivered message yields the identical Bundle; every entry has a
``urn:uuid:`` fullUrl, derived the same way, that the other entries reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.kela.directory import Directory
from adapters.kela.engine import Scope, evaluate_variables, is_absent
from adapters.kela.errors import ErrorCode, KelaMessageError
from adapters.kela.functions import stable_uuid
from adapters.kela.mapping import EntrySpec, MessageMapping, mappings
from adapters.kela.wire import first_schema_error, local_name, message_schema, namespace_of


@dataclass(frozen=True, slots=True)
class InboundResult:
    """A mapped inbound message: the Bundle and what the endpoint needs to answer."""

    service_code: str
    source_id: str
    """Kela's id of the notification, application or decision."""
    sent_at: str
    hetu: str
    municipality_code: str
    wellbeing_area: str
    """Organization id of the wellbeing area the message is for."""
    focus: str
    """``Type/id`` of the resource the response names (ServiceRequest or DocumentReference)."""
    task: str | None
    consent_given: bool | None
    bundle: dict[str, Any]

    @property
    def focus_id(self) -> str:
        return self.focus.split("/", 1)[1]


def inbound_services() -> tuple[str, ...]:
    """The X-Road service codes Kela may call."""
    return tuple(mappings("inbound"))


def inbound_namespace(service_code: str) -> str:
    return _mapping_for(service_code).namespace


def _mapping_for(service_code: str) -> MessageMapping:
    mapping = mappings("inbound").get(service_code)
    if mapping is None:
        known = ", ".join(mappings("inbound"))
        raise KelaMessageError(
            ErrorCode.UNKNOWN_SERVICE,
            f"Service {service_code!r} is not offered; the services are {known}",
        )
    return mapping


def check_body(mapping: MessageMapping, body: Any) -> None:
    """The body must be the service's element in its namespace and valid against the XSD."""
    name, namespace = local_name(body), namespace_of(body)
    if name != mapping.message or namespace != mapping.namespace:
        found = f"{{{namespace}}}{name}" if namespace else f"{name} (no namespace)"
        expected = f"{{{mapping.namespace}}}{mapping.message}"
        hint = ""
        if (
            name == mapping.message
            and namespace
            and namespace.rsplit(":", 1)[0] == (mapping.namespace.rsplit(":", 1)[0])
        ):
            hint = f"; version {namespace.rsplit(':', 1)[1]} of the message is not supported"
        raise KelaMessageError(
            ErrorCode.WRONG_ELEMENT,
            f"The body of service {mapping.message} must be {expected}, not {found}{hint}",
        )
    problem = first_schema_error(message_schema(mapping.schema_file), body)
    if problem is not None:
        raise KelaMessageError(
            ErrorCode.SCHEMA_INVALID,
            f"{mapping.message} is not valid against {mapping.schema_file}: {problem}",
        )


def map_inbound(
    service_code: str, body: Any, directory: Directory, *, sender: str
) -> InboundResult:
    """Validates and maps one Kela message body (an lxml element).

    ``sender`` is the Organization id of the calling X-Road member (Kela); ``directory``
    finds the wellbeing area of the client's municipality. Raises
    :class:`KelaMessageError` for a message that must be refused.
    """
    mapping = _mapping_for(service_code)
    check_body(mapping, body)
    scope = Scope(message=mapping.message, node=body, directory=directory, sender=sender)
    evaluate_variables(mapping.variables, scope)
    source_id = str(scope.variables[mapping.source])
    instances = _entry_instances(mapping, scope, source_id)
    full_urls = {(spec.name, key): url for spec, _, key, url in instances}
    scope.full_urls = full_urls
    for _, entry_scope, _, _ in instances:
        entry_scope.full_urls = full_urls
    entries = [_render_entry(spec, entry_scope, url) for spec, entry_scope, _, url in instances]
    assert mapping.facts is not None
    facts: dict[str, Any] = mapping.facts.render(scope) or {}
    return InboundResult(
        service_code=mapping.message,
        source_id=source_id,
        sent_at=str(facts["sentAt"]),
        hetu=str(facts["hetu"]),
        municipality_code=str(facts["municipalityCode"]),
        wellbeing_area=str(facts["wellbeingArea"]),
        focus=str(facts["focus"]),
        task=facts.get("task"),
        consent_given=facts.get("consentGiven"),
        bundle={"resourceType": "Bundle", "type": "transaction", "entry": entries},
    )


def _entry_instances(
    mapping: MessageMapping, scope: Scope, source_id: str
) -> list[tuple[EntrySpec, Scope, str, str]]:
    """Each entry to make, with its own scope (XML node and entry variables), key and
    fullUrl."""
    instances: list[tuple[EntrySpec, Scope, str, str]] = []
    for spec in mapping.entries:
        if spec.when is not None:
            wanted = spec.when.render(scope)
            if is_absent(wanted) or wanted is False:
                continue
        nodes = spec.each.render(scope) if spec.each is not None else [scope.node]
        for node in nodes:
            entry_scope = scope.at(node, dict(scope.variables))
            evaluate_variables(spec.variables, entry_scope)
            key = "" if spec.key is None else str(spec.key.render(entry_scope))
            url = "urn:uuid:" + stable_uuid(mapping.message, source_id, spec.name, key)
            instances.append((spec, entry_scope, key, url))
    return instances


def _render_entry(spec: EntrySpec, scope: Scope, full_url: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": spec.resource.render(scope),
        "request": spec.request.render(scope),
    }
