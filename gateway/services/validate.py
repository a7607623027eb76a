"""$validate on type and instance (R4 resource-operation-validate.html).

The answer is always an OperationOutcome; it lists the errors, or one information
issue when the resource is valid.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import BadRequest, Issue, operation_outcome
from gateway.fhir.validation import validate_resource
from gateway.services.context import RequestContext
from gateway.services.resources import ensure_type, read_resource

VALID = Issue("information", "informational", "Validation successful: no errors found")
MODES = ("create", "update", "delete")


def _unwrap_parameters(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The ``resource`` and ``mode`` of a Parameters body, or the body itself."""
    if body.get("resourceType") != "Parameters":
        return body, None
    resource: dict[str, Any] | None = None
    mode: str | None = None
    for parameter in body.get("parameter", []):
        if parameter.get("name") == "resource":
            resource = parameter.get("resource")
        elif parameter.get("name") == "mode":
            mode = parameter.get("valueCode") or parameter.get("valueString")
    return resource, mode


def validate(
    ctx: RequestContext,
    *,
    resource_type: str,
    resource_id: str | None = None,
    body: dict[str, Any] | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """Validates a posted resource, or the stored one when no body is given."""
    ensure_type(resource_type)
    resource: dict[str, Any] | None = None
    if body is not None:
        resource, body_mode = _unwrap_parameters(body)
        mode = mode or body_mode
    if mode is not None and mode not in MODES:
        raise BadRequest(f"Unknown $validate mode '{mode}'; use one of {', '.join(MODES)}")
    if resource is None:
        if resource_id is None:
            raise BadRequest("$validate on a type needs the resource in the body")
        stored = read_resource(ctx, resource_type=resource_type, resource_id=resource_id)
        if mode == "delete":
            return operation_outcome([VALID])
        assert stored.body is not None
        resource = orjson.loads(stored.body)
    assert resource is not None
    issues = validate_resource(resource, expected_type=resource_type)
    if resource_id is not None and resource.get("id") not in (None, resource_id):
        issues.append(
            Issue(
                "error",
                "invalid",
                f"The resource id '{resource.get('id')}' does not match the URL id '{resource_id}'",
                (f"{resource_type}.id",),
            )
        )
    if mode == "update" and not resource.get("id"):
        issues.append(
            Issue("error", "required", "An update needs the resource id", (f"{resource_type}.id",))
        )
    return operation_outcome(issues or [VALID])
