"""The one place where errors become HTTP responses with an OperationOutcome.

R4 http.html §3.1.0.4 and operationoutcome.html: every failure answers with an
OperationOutcome in the negotiated format; nothing else leaks (no stack traces).
"""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.http import fhir_response
from gateway.errors import FhirError, Issue, NotAcceptable, operation_outcome

log = logging.getLogger("silta.api")

HTTP_ISSUE_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly"}


def _render(
    request: Request, status: int, outcome: dict[str, object], headers: dict[str, str] | None = None
) -> Response:
    try:
        return fhir_response(request, outcome, status=status, headers=headers)
    except NotAcceptable:
        # The error itself must still be readable: fall back to JSON.
        import orjson

        return Response(
            orjson.dumps(outcome),
            status_code=status,
            headers=headers,
            media_type="application/fhir+json; charset=utf-8",
        )


async def fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return _render(request, exc.status, exc.outcome(), exc.headers or None)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_ISSUE_CODES.get(exc.status_code, "processing")
    detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
    if exc.status_code == 404:
        detail = f"No FHIR interaction at {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    outcome = operation_outcome([Issue("error", code, detail)])
    return _render(request, exc.status_code, outcome, dict(exc.headers or {}))


async def request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue(
            "error",
            "invalid",
            str(e.get("msg", "invalid")),
            (".".join(map(str, e.get("loc", ()))),),
        )
        for e in exc.errors()
    ]
    return _render(request, 400, operation_outcome(issues))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    outcome = operation_outcome(
        [Issue("fatal", "exception", "The server failed to process the request; it was logged")]
    )
    return _render(request, 500, outcome)


def install(app: Starlette) -> None:
    app.add_exception_handler(FhirError, fhir_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(Exception, unexpected_error)
