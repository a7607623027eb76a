"""HTTP plumbing of the FHIR API: Prefer headers, bodies, formats and response headers.

R4 http.html §3.1.0.1.10 (content types and encodings), §3.1.0.1.8 (Prefer return),
§3.1.0.1.5 (ETag / Last-Modified), search.html §3.1.1.4.17 (Prefer handling).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.fhir.formats import WireFormat, negotiate_response_format, parse_body, render
from gateway.store.repository import StoredResource

JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True, slots=True)
class Prefer:
    """The parts of the Prefer header (RFC 7240) FHIR defines."""

    return_: str = "representation"
    strict: bool = False

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        return_ = "representation"
        strict = False
        for part in (header or "").replace(";", ",").split(","):
            name, _, value = part.strip().partition("=")
            value = value.strip().strip('"')
            if name == "return" and value in ("minimal", "representation", "OperationOutcome"):
                return_ = value
            elif name == "handling":
                strict = value == "strict"
        return cls(return_, strict)


def request_query(request: Request) -> str:
    """The query string of the request, as ``request.url.query`` gives it (UTF-8; a
    byte that is not is replaced, not a server error), read from the ASGI scope
    without building the full URL."""
    query: bytes = request.scope.get("query_string", b"")
    return query.decode("utf-8", "replace")


def request_path(request: Request) -> str:
    """The request path, as ``request.url.path`` gives it (``?``, ``#`` and ``\\``
    escaped), read from the ASGI scope."""
    path: str = request.scope["path"]
    return path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")


def http_date(micros: int) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7) for Last-Modified."""
    return formatdate(micros / 1_000_000, usegmt=True)


def version_headers(stored: StoredResource) -> dict[str, str]:
    return {"ETag": f'W/"{stored.version}"', "Last-Modified": http_date(stored.last_updated)}


T = TypeVar("T")


async def on_service_thread(request: Request, function: Callable[[], T]) -> T:
    """Runs a service call on a worker thread. At most half as many run at once as the
    database pool has connections: a call holds at most two at a time (its transaction
    and a single-statement read, such as a policy lookup), so calls that each wait for a
    second connection can never empty the pool between them."""
    state = request.app.state
    limiter = getattr(state, "service_limiter", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(max(1, state.database.max_connections // 2))
        state.service_limiter = limiter
    return await anyio.to_thread.run_sync(function, limiter=limiter)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_resource_body(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit)
    if not body.strip():
        raise BadRequest("The request has no body")
    return parse_body(body, request.headers.get("content-type"))


def response_format(request: Request) -> WireFormat:
    return negotiate_response_format(
        request.headers.get("accept"), request.query_params.get("_format")
    )


def fhir_response(
    request: Request,
    payload: dict[str, Any] | bytes | None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Renders a resource (dict, or stored JSON bytes) in the negotiated format."""
    fmt = response_format(request)
    if payload is None:
        return Response(status_code=status, headers=headers)
    pretty = request.query_params.get("_pretty") == "true"
    if fmt is WireFormat.JSON and not pretty:
        content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    else:
        # Materialise embedded raw JSON (orjson.Fragment) before another rendering.
        resource = orjson.loads(payload if isinstance(payload, bytes) else orjson.dumps(payload))
        content = render(resource, fmt, pretty=pretty)
    return Response(
        content=content,
        status_code=status,
        headers=headers,
        media_type=f"{fmt.media_type}; charset=utf-8",
    )
