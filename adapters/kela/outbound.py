"""Gateway → Kela: FHIR resources become X-Road message bodies.

``NotificationFeedback`` reports a status change of a notification's Task (the
Gravity SDOH referral pattern: the performer sets accepted / in-progress / on-hold /
completed / rejected, with businessStatus and statusReason); it carries status only,
never the content of the social services' records. ``MunicipalAssistanceDecision``
reports the wellbeing area's decision on a forwarded application (Act on Social
Assistance 1412/1997). Each message id is derived from the Task id and version, so a
retried delivery carries the same id (X-Road message protocol 4.0 §2.2, ``id``). Every
message built is validated against its XSD before it is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.kela.engine import Scope, evaluate_variables
from adapters.kela.errors import ErrorCode, KelaMessageError
from adapters.kela.mapping import MessageMapping, mappings
from adapters.kela.wire import build_element, first_schema_error, message_schema


def outbound_services() -> tuple[str, ...]:
    """The X-Road service codes the gateway calls at Kela."""
    return tuple(mappings("outbound"))


def outbound_namespace(service_code: str) -> str:
    return _mapping_for(service_code).namespace


def _mapping_for(service_code: str) -> MessageMapping:
    mapping = mappings("outbound").get(service_code)
    if mapping is None:
        raise KelaMessageError(
            ErrorCode.UNKNOWN_SERVICE,
            f"There is no outbound message {service_code!r}; the messages are "
            + ", ".join(mappings("outbound")),
        )
    return mapping


def _describe(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def build_outbound(service_code: str, inputs: Mapping[str, Mapping[str, Any] | None]) -> Any:
    """The body element (lxml) of ``service_code`` built from the named input
    resources its mapping declares (``mappings/kela/<message>.outbound.json``)."""
    mapping = _mapping_for(service_code)
    assert mapping.inputs is not None and mapping.body is not None
    resources: dict[str, Mapping[str, Any]] = {}
    for name, spec in mapping.inputs.items():
        resource = inputs.get(name)
        if resource is None:
            if spec.required:
                raise KelaMessageError(
                    ErrorCode.BAD_INPUT, f"{mapping.message}: the {spec.resource_type} is missing"
                )
            continue
        if resource.get("resourceType") != spec.resource_type:
            raise KelaMessageError(
                ErrorCode.BAD_INPUT,
                f"{mapping.message}: {name} must be a {spec.resource_type}, "
                f"not {resource.get('resourceType')}",
            )
        resources[name] = resource
    unknown = sorted(set(inputs) - set(mapping.inputs))
    if unknown:
        raise KelaMessageError(
            ErrorCode.BAD_INPUT, f"{mapping.message} takes no input {', '.join(unknown)}"
        )
    scope = Scope(message=mapping.message, resources=resources)
    evaluate_variables(mapping.variables, scope)
    content = mapping.body.render(scope) or {}
    element = build_element(mapping.namespace, mapping.message, content)
    problem = first_schema_error(message_schema(mapping.schema_file), element)
    if problem is not None:
        sources = ", ".join(_describe(r) for r in resources.values())
        raise KelaMessageError(
            ErrorCode.OUTBOUND_INVALID,
            f"{mapping.message} built from {sources} is not valid against "
            f"{mapping.schema_file}: {problem}",
        )
    return element


def notification_feedback(
    task: Mapping[str, Any],
    service_request: Mapping[str, Any],
    *,
    contact: Mapping[str, Any] | None = None,
) -> Any:
    """``NotificationFeedback`` for one stored version of a notification Task and its
    focus ServiceRequest. ``contact`` (a PractitionerRole: ``practitioner.display`` and
    phone/email ``telecom``) is the named worker, passed only when the data-sharing
    agreement allows Kela to see it."""
    return build_outbound(
        "NotificationFeedback",
        {"task": task, "serviceRequest": service_request, "contact": contact},
    )


def municipal_assistance_decision(
    task: Mapping[str, Any],
    service_request: Mapping[str, Any],
    wellbeing_area: Mapping[str, Any],
) -> Any:
    """``MunicipalAssistanceDecision`` from a completed application Task (its outputs:
    outcome, amounts, period, decision date), its focus ServiceRequest and the
    wellbeing area's Organization (the Task owner)."""
    return build_outbound(
        "MunicipalAssistanceDecision",
        {"task": task, "serviceRequest": service_request, "wellbeingArea": wellbeing_area},
    )
