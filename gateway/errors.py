"""Typed errors of the gateway, each carrying what its OperationOutcome needs.

They are mapped to an HTTP status and an OperationOutcome in exactly one place
(``gateway.api.errors``); services and adapters only raise them.
See FHIR R4 http.html §3.1.0.4 (status codes) and operationoutcome.html.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue (R4 operationoutcome.html)."""

    severity: str  # fatal | error | warning | information
    code: str  # IssueType code, e.g. invalid, not-found, conflict
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    """Builds an OperationOutcome resource from issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    """Base of every error that becomes an OperationOutcome."""

    diagnostics: str
    expression: tuple[str, ...] = ()
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __post_init__(self) -> None:
        Exception.__init__(self, self.diagnostics)
        if not self.issues:
            self.issues = [Issue("error", self.code, self.diagnostics, tuple(self.expression))]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    """400: syntax errors in the request (R4 http.html §3.1.0.4)."""

    status = 400
    code = "invalid"


class InvalidSearch(BadRequest):
    """400 for a search the server cannot process (search.html §3.1.1.1)."""

    code = "processing"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    """422: the content violates the resource definition or a business rule."""

    status = 422
    code = "processing"
