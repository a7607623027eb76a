"""The FHIR R4 RESTful API (R4 http.html): one handler per interaction, all thin.

Handlers parse the HTTP request, call one service function, and render its result.
Blocking service calls run in the thread pool so the event loop keeps serving.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.http import (
    JSON_PATCH,
    Prefer,
    fhir_response,
    read_body,
    read_resource_body,
    version_headers,
)
from gateway.errors import BadRequest, UnsupportedMediaType, operation_outcome
from gateway.errors import Issue as OutcomeIssue
from gateway.fhir.elements import apply_elements, apply_summary
from gateway.services import history as history_service
from gateway.services import resources as resource_service
from gateway.services import search as search_service
from gateway.services import transactions as transaction_service
from gateway.services import validate as validate_service
from gateway.services.capability import capability_statement
from gateway.services.context import RequestContext
from gateway.services.resources import WriteResult

router = APIRouter()
T = TypeVar("T")


def context(request: Request) -> RequestContext:
    """The service context of one request (settings, database and policy of the app)."""
    state = request.app.state
    settings = state.settings
    base = settings.public_base_url or f"{str(request.base_url).rstrip('/')}/fhir"
    return RequestContext(
        db=state.database,
        settings=settings,
        base_url=base,
        policy=state.policy,
        strict_handling=Prefer.parse(request.headers.get("prefer")).strict,
    )


async def call(function: Callable[..., T], /, **kwargs: Any) -> T:
    return await run_in_threadpool(functools.partial(function, **kwargs))


def _write_response(
    request: Request, ctx: RequestContext, result: WriteResult, *, location: bool
) -> Response:
    stored = result.stored
    headers = version_headers(stored)
    if location:
        headers["Location"] = ctx.url_for(stored.res_type, stored.res_id, stored.version)
    else:
        headers["Content-Location"] = ctx.url_for(stored.res_type, stored.res_id, stored.version)
    prefer = Prefer.parse(request.headers.get("prefer"))
    if prefer.return_ == "minimal":
        return fhir_response(request, None, status=result.status, headers=headers)
    if prefer.return_ == "OperationOutcome":
        verb = "created" if result.created else ("updated" if result.changed else "unchanged")
        outcome = operation_outcome(
            [
                OutcomeIssue(
                    "information", "informational", f"{stored.res_type}/{stored.res_id} {verb}"
                )
            ]
        )
        return fhir_response(request, outcome, status=result.status, headers=headers)
    return fhir_response(request, stored.body, status=result.status, headers=headers)


def _query(request: Request) -> list[tuple[str, str]]:
    return [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")
    ]


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    """capabilities (R4 http.html §3.1.0.12)."""
    return fhir_response(request, capability_statement(context(request).base_url))


@router.post("")
@router.post("/")
async def transaction_or_batch(request: Request) -> Response:
    """transaction / batch (R4 http.html §3.1.0.11)."""
    ctx = context(request)
    body = await read_resource_body(request, ctx.settings.max_body_bytes)
    if body.get("resourceType") != "Bundle":
        raise BadRequest(
            "Only a Bundle may be posted to the base URL", expression=("resourceType",)
        )
    return fhir_response(
        request, await call(transaction_service.process_bundle, ctx=ctx, body=body)
    )


@router.get("/_history")
async def system_history(request: Request) -> Response:
    ctx = context(request)
    result = await call(history_service.history, ctx=ctx, params=_query(request))
    return fhir_response(request, result)


@router.get("/{resource_type}")
async def search(request: Request, resource_type: str) -> Response:
    """search-type with GET (R4 http.html §3.1.0.9)."""
    ctx = context(request)
    result = await call(
        search_service.search_type, ctx=ctx, resource_type=resource_type, params=_query(request)
    )
    return fhir_response(request, result)


@router.post("/{resource_type}/_search")
async def search_post(request: Request, resource_type: str) -> Response:
    """search-type with POST and form parameters (R4 http.html §3.1.0.9)."""
    ctx = context(request)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip()
    body = await read_body(request, ctx.settings.max_body_bytes)
    if body and content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(
            "POST _search takes application/x-www-form-urlencoded parameters"
        )
    params = _query(request) + parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    result = await call(
        search_service.search_type, ctx=ctx, resource_type=resource_type, params=params
    )
    return fhir_response(request, result)


@router.post("/{resource_type}")
async def create(request: Request, resource_type: str) -> Response:
    """create and conditional create (R4 http.html §3.1.0.8)."""
    ctx = context(request)
    resource_service.ensure_type(resource_type)
    resource = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        resource_service.create_resource,
        ctx=ctx,
        resource_type=resource_type,
        resource=resource,
        if_none_exist=request.headers.get("if-none-exist"),
    )
    return _write_response(request, ctx, result, location=True)


@router.put("/{resource_type}")
async def conditional_update(request: Request, resource_type: str) -> Response:
    """Conditional update (R4 http.html §3.1.0.4.3)."""
    ctx = context(request)
    resource_service.ensure_type(resource_type)
    criteria = request.url.query
    if not criteria:
        raise BadRequest("An update on the type needs search criteria (conditional update)")
    resource = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        resource_service.conditional_update,
        ctx=ctx,
        resource_type=resource_type,
        criteria=criteria,
        resource=resource,
        if_match=request.headers.get("if-match"),
    )
    return _write_response(request, ctx, result, location=result.created)


@router.delete("/{resource_type}")
async def conditional_delete(request: Request, resource_type: str) -> Response:
    """Conditional delete (R4 http.html §3.1.0.7.1)."""
    ctx = context(request)
    await call(
        resource_service.conditional_delete,
        ctx=ctx,
        resource_type=resource_type,
        criteria=request.url.query,
    )
    return Response(status_code=204)


@router.get("/{resource_type}/_history")
async def type_history(request: Request, resource_type: str) -> Response:
    ctx = context(request)
    result = await call(
        history_service.history, ctx=ctx, resource_type=resource_type, params=_query(request)
    )
    return fhir_response(request, result)


@router.post("/{resource_type}/$validate")
async def validate_type(request: Request, resource_type: str) -> Response:
    """$validate on a type (R4 resource-operation-validate.html)."""
    ctx = context(request)
    body = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        validate_service.validate,
        ctx=ctx,
        resource_type=resource_type,
        body=body,
        mode=request.query_params.get("mode"),
    )
    return fhir_response(request, result)


@router.get("/{resource_type}/{resource_id}/$validate")
@router.post("/{resource_type}/{resource_id}/$validate")
async def validate_instance(request: Request, resource_type: str, resource_id: str) -> Response:
    """$validate on an instance: the posted resource, or the stored one on GET."""
    ctx = context(request)
    body = None
    if request.method == "POST":
        body = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        validate_service.validate,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        body=body,
        mode=request.query_params.get("mode"),
    )
    return fhir_response(request, result)


@router.get("/{resource_type}/{resource_id}")
async def read(request: Request, resource_type: str, resource_id: str) -> Response:
    """read (R4 http.html §3.1.0.2); honours _summary and _elements."""
    ctx = context(request)
    stored = await call(
        resource_service.read_resource,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
    )
    return fhir_response(request, _subset(request, stored.body), headers=version_headers(stored))


def _subset(request: Request, body: bytes | None) -> dict[str, Any] | bytes | None:
    summary = request.query_params.get("_summary")
    elements = request.query_params.get("_elements")
    if body is None or (not summary and not elements):
        return body
    resource: dict[str, Any] = orjson.loads(body)
    if summary:
        resource = apply_summary(resource, summary)
    if elements:
        resource = apply_elements(resource, [e.strip() for e in elements.split(",") if e.strip()])
    return resource


@router.put("/{resource_type}/{resource_id}")
async def update(request: Request, resource_type: str, resource_id: str) -> Response:
    """update and update-as-create (R4 http.html §3.1.0.4)."""
    ctx = context(request)
    resource_service.ensure_type(resource_type)
    resource = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        resource_service.update_resource,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        resource=resource,
        if_match=request.headers.get("if-match"),
    )
    return _write_response(request, ctx, result, location=result.created)


@router.patch("/{resource_type}/{resource_id}")
async def patch(request: Request, resource_type: str, resource_id: str) -> Response:
    """patch with JSON Patch (R4 http.html §3.1.0.6)."""
    ctx = context(request)
    resource_service.ensure_type(resource_type)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip()
    if content_type != JSON_PATCH:
        raise UnsupportedMediaType(f"PATCH takes {JSON_PATCH}, not '{content_type or 'nothing'}'")
    body = await read_body(request, ctx.settings.max_body_bytes)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The JSON Patch is not valid JSON: {exc}") from exc
    result = await call(
        resource_service.patch_resource,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        patch=document,
        if_match=request.headers.get("if-match"),
    )
    return _write_response(request, ctx, result, location=False)


@router.delete("/{resource_type}/{resource_id}")
async def delete(request: Request, resource_type: str, resource_id: str) -> Response:
    """delete (R4 http.html §3.1.0.7): 204 No Content."""
    ctx = context(request)
    await call(
        resource_service.delete_resource,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        if_match=request.headers.get("if-match"),
    )
    return Response(status_code=204)


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(request: Request, resource_type: str, resource_id: str) -> Response:
    ctx = context(request)
    result = await call(
        history_service.history,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        params=_query(request),
    )
    return fhir_response(request, result)


@router.get("/{resource_type}/{resource_id}/_history/{version}")
async def vread(request: Request, resource_type: str, resource_id: str, version: str) -> Response:
    """vread (R4 http.html §3.1.0.3)."""
    ctx = context(request)
    stored = await call(
        resource_service.vread_resource,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        version=version,
    )
    return fhir_response(request, stored.body, headers=version_headers(stored))
