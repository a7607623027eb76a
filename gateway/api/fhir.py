"""The FHIR R4 RESTful API (R4 http.html): one handler per interaction, all thin.

Handlers parse the HTTP request, call one service function, and render its result.
They are plain Starlette routes mounted at the FHIR base: FHIR's contract is the
CapabilityStatement, so they need no OpenAPI models or dependency injection.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.http import (
    JSON_PATCH,
    Prefer,
    fhir_response,
    on_service_thread,
    read_body,
    read_resource_body,
    request_path,
    request_query,
    version_headers,
)
from gateway.audit.log import audited
from gateway.auth.routes import auth_urls
from gateway.auth.tokens import bearer_token
from gateway.errors import BadRequest, UnsupportedMediaType, operation_outcome
from gateway.errors import Issue as OutcomeIssue
from gateway.fhir.elements import apply_elements, apply_summary
from gateway.policy import AccessPolicy, PermitAll, Requester
from gateway.policy.rules import purpose_system, purposes_of_use
from gateway.policy.trust import TrustPolicy
from gateway.services import history as history_service
from gateway.services import resources as resource_service
from gateway.services import search as search_service
from gateway.services import transactions as transaction_service
from gateway.services import validate as validate_service
from gateway.services.capability import capability_statement
from gateway.services.context import RequestContext
from gateway.services.resources import WriteResult, now_micros
from gateway.store.group_commit import deferred_commits

T = TypeVar("T")


PURPOSE_HEADER = "x-purpose-of-use"


def context(request: Request) -> RequestContext:
    """The service context of one request: settings, database and the access policy of
    the authenticated requester (SMART Backend Services bearer token)."""
    state = request.app.state
    settings = state.settings
    base = settings.public_base_url or _request_base(request)
    policy: AccessPolicy
    if settings.auth_required:
        principal = state.tokens.principal(
            bearer_token(request.headers.get("authorization")), audience=base
        )
        requester = Requester(
            client_id=principal.client_id,
            organization=principal.organization_id,
            purpose=_purpose(request.headers.get(PURPOSE_HEADER), principal.default_purpose),
            scopes=principal.scopes,
        )
        policy = TrustPolicy(state.database, requester, now_micros())
    else:
        policy = PermitAll()
    return RequestContext(
        db=state.database,
        settings=settings,
        base_url=base,
        policy=policy,
        strict_handling=Prefer.parse(request.headers.get("prefer")).strict,
        write_hooks=state.write_hooks,
    )


def _purpose(header: str | None, default: str | None) -> str | None:
    """The purpose of use: the ``X-Purpose-Of-Use`` header (a code of the purpose-of-use
    CodeSystem, optionally as ``system|code``) or the client's registered default."""
    if header is None:
        return default
    system, bar, code = header.strip().rpartition("|")
    if (bar and system != purpose_system()) or code not in purposes_of_use():
        raise BadRequest(
            f"X-Purpose-Of-Use '{header}' is not a purpose of use; use one of "
            + ", ".join(sorted(purposes_of_use()))
        )
    return code


def _request_base(request: Request) -> str:
    """The FHIR base as the client addressed it (scheme, Host header, mount path)."""
    scope = request.scope
    host = request.headers.get("host")
    if host is None:
        server_host, server_port = scope.get("server") or ("localhost", 80)
        host = f"{server_host}:{server_port}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('app_root_path', '')}/fhir"


async def call(
    function: Callable[..., T], /, *, ctx: RequestContext, request: Request, **kwargs: Any
) -> T:
    """Runs a service function: inline on the event loop (the default on SQLite: its
    statements take microseconds, less than a hand-off to a worker thread), or in the
    thread pool (the default on PostgreSQL, whose statements are round trips that would
    stop the loop; ``SILTA_SERVICE_THREADS`` chooses either). Inline writes share their
    commit with the write requests the loop runs next (``deferred_commits``); the answer
    waits for it. What it touched goes to the access and disclosure log, whatever its outcome."""
    query = request_query(request)
    with audited(
        request.app.state.audit,
        ctx.requester,
        ctx.policy.touched,
        action=ACTIONS.get(function.__name__, function.__name__),
        query=f"{request.method} {request_path(request)}" + (f"?{query}" if query else ""),
    ):
        if ctx.services_on_threads:
            return await on_service_thread(request, functools.partial(function, ctx=ctx, **kwargs))
        if ACTIONS.get(function.__name__) in WRITE_ACTIONS:
            await ctx.db.writers_free()
        with deferred_commits() as commits:
            result = function(ctx=ctx, **kwargs)
        await commits.wait()
        return result


# Service function → the FHIR interaction it performs (restful-interaction codes).
ACTIONS = {
    "read_resource": "read",
    "vread_resource": "vread",
    "search_type": "search-type",
    "create_resource": "create",
    "update_resource": "update",
    "conditional_update": "update",
    "patch_resource": "patch",
    "delete_resource": "delete",
    "conditional_delete": "delete",
    "history": "history",
    "process_bundle": "transaction",
    "validate": "operation",
}
WRITE_ACTIONS = frozenset(("create", "update", "patch", "delete", "transaction"))
"""The interactions whose service functions write (and so need SQLite's write turn)."""


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


async def metadata(request: Request) -> Response:
    """capabilities (R4 http.html §3.1.0.12)."""
    urls = auth_urls(request)
    secured = request.app.state.settings.auth_required
    token_url = urls.token_endpoint if secured else None
    return fhir_response(request, capability_statement(urls.fhir_base, token_url=token_url))


async def transaction_or_batch(request: Request) -> Response:
    """transaction / batch (R4 http.html §3.1.0.11)."""
    ctx = context(request)
    body = await read_resource_body(request, ctx.settings.max_body_bytes)
    if body.get("resourceType") != "Bundle":
        raise BadRequest(
            "Only a Bundle may be posted to the base URL", expression=("resourceType",)
        )
    return fhir_response(
        request, await call(transaction_service.process_bundle, request=request, ctx=ctx, body=body)
    )


async def system_history(request: Request) -> Response:
    ctx = context(request)
    result = await call(history_service.history, request=request, ctx=ctx, params=_query(request))
    return fhir_response(request, result)


async def search(request: Request) -> Response:
    """search-type with GET (R4 http.html §3.1.0.9)."""
    resource_type = request.path_params["resource_type"]
    ctx = context(request)
    result = await call(
        search_service.search_type,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        params=_query(request),
    )
    return fhir_response(request, result)


async def search_post(request: Request) -> Response:
    """search-type with POST and form parameters (R4 http.html §3.1.0.9)."""
    resource_type = request.path_params["resource_type"]
    ctx = context(request)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip()
    body = await read_body(request, ctx.settings.max_body_bytes)
    if body and content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(
            "POST _search takes application/x-www-form-urlencoded parameters"
        )
    params = _query(request) + parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    result = await call(
        search_service.search_type,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        params=params,
    )
    return fhir_response(request, result)


async def create(request: Request) -> Response:
    """create and conditional create (R4 http.html §3.1.0.8)."""
    resource_type = request.path_params["resource_type"]
    ctx = context(request)
    resource_service.ensure_type(resource_type)
    resource = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        resource_service.create_resource,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        resource=resource,
        if_none_exist=request.headers.get("if-none-exist"),
    )
    return _write_response(request, ctx, result, location=True)


async def conditional_update(request: Request) -> Response:
    """Conditional update (R4 http.html §3.1.0.4.3)."""
    resource_type = request.path_params["resource_type"]
    ctx = context(request)
    resource_service.ensure_type(resource_type)
    criteria = request_query(request)
    if not criteria:
        raise BadRequest("An update on the type needs search criteria (conditional update)")
    resource = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        resource_service.conditional_update,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        criteria=criteria,
        resource=resource,
        if_match=request.headers.get("if-match"),
    )
    return _write_response(request, ctx, result, location=result.created)


async def conditional_delete(request: Request) -> Response:
    """Conditional delete (R4 http.html §3.1.0.7.1)."""
    resource_type = request.path_params["resource_type"]
    ctx = context(request)
    await call(
        resource_service.conditional_delete,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        criteria=request_query(request),
    )
    return Response(status_code=204)


async def type_history(request: Request) -> Response:
    resource_type = request.path_params["resource_type"]
    ctx = context(request)
    result = await call(
        history_service.history,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        params=_query(request),
    )
    return fhir_response(request, result)


async def validate(request: Request) -> Response:
    """$validate on a type or an instance (R4 resource-operation-validate.html): the posted
    resource, or on GET the stored one."""
    ctx = context(request)
    body = None
    if request.method == "POST":
        body = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        validate_service.validate,
        request=request,
        ctx=ctx,
        resource_type=request.path_params["resource_type"],
        resource_id=request.path_params.get("resource_id"),
        body=body,
        mode=request.query_params.get("mode"),
    )
    return fhir_response(request, result)


async def read(request: Request) -> Response:
    """read (R4 http.html §3.1.0.2); honours _summary and _elements."""
    resource_type = request.path_params["resource_type"]
    resource_id = request.path_params["resource_id"]
    ctx = context(request)
    stored = await call(
        resource_service.read_resource,
        request=request,
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


async def update(request: Request) -> Response:
    """update and update-as-create (R4 http.html §3.1.0.4)."""
    resource_type = request.path_params["resource_type"]
    resource_id = request.path_params["resource_id"]
    ctx = context(request)
    resource_service.ensure_type(resource_type)
    resource = await read_resource_body(request, ctx.settings.max_body_bytes)
    result = await call(
        resource_service.update_resource,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        resource=resource,
        if_match=request.headers.get("if-match"),
    )
    return _write_response(request, ctx, result, location=result.created)


async def patch(request: Request) -> Response:
    """patch with JSON Patch (R4 http.html §3.1.0.6)."""
    resource_type = request.path_params["resource_type"]
    resource_id = request.path_params["resource_id"]
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
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        patch=document,
        if_match=request.headers.get("if-match"),
    )
    return _write_response(request, ctx, result, location=False)


async def delete(request: Request) -> Response:
    """delete (R4 http.html §3.1.0.7): 204 No Content."""
    resource_type = request.path_params["resource_type"]
    resource_id = request.path_params["resource_id"]
    ctx = context(request)
    await call(
        resource_service.delete_resource,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        if_match=request.headers.get("if-match"),
    )
    return Response(status_code=204)


async def instance_history(request: Request) -> Response:
    resource_type = request.path_params["resource_type"]
    resource_id = request.path_params["resource_id"]
    ctx = context(request)
    result = await call(
        history_service.history,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        params=_query(request),
    )
    return fhir_response(request, result)


async def vread(request: Request) -> Response:
    """vread (R4 http.html §3.1.0.3)."""
    resource_type = request.path_params["resource_type"]
    resource_id = request.path_params["resource_id"]
    version = request.path_params["version"]
    ctx = context(request)
    stored = await call(
        resource_service.vread_resource,
        request=request,
        ctx=ctx,
        resource_type=resource_type,
        resource_id=resource_id,
        version=version,
    )
    return fhir_response(request, stored.body, headers=version_headers(stored))


class ResourceTypeConvertor(Convertor[str]):
    """A resource type name in a URL (R4 http.html §3.1.0.1.1: ``[type]``)."""

    regex = "[A-Z][A-Za-z]{1,63}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class ResourceIdConvertor(ResourceTypeConvertor):
    """A logical id in a URL (R4 datatypes.html#id), so ``_history`` and ``$validate``
    can never be taken for one."""

    regex = "[A-Za-z0-9\\-\\.]{1,64}"


register_url_convertor("fhir_type", ResourceTypeConvertor())
register_url_convertor("fhir_id", ResourceIdConvertor())

T_ = "{resource_type:fhir_type}"
ID = "{resource_id:fhir_id}"

# Types and ids cannot collide with the literal segments, so the busiest routes (read,
# search) come first and are matched with the fewest regex tests.
_ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    (f"/{T_}/{ID}", "GET", read),
    (f"/{T_}/{ID}", "PUT", update),
    (f"/{T_}/{ID}", "PATCH", patch),
    (f"/{T_}/{ID}", "DELETE", delete),
    (f"/{T_}", "GET", search),
    (f"/{T_}", "POST", create),
    (f"/{T_}", "PUT", conditional_update),
    (f"/{T_}", "DELETE", conditional_delete),
    ("/metadata", "GET", metadata),
    ("/", "POST", transaction_or_batch),
    ("/_history", "GET", system_history),
    (f"/{T_}/_search", "POST", search_post),
    (f"/{T_}/_history", "GET", type_history),
    (f"/{T_}/$validate", "POST", validate),
    (f"/{T_}/{ID}/$validate", "GET", validate),
    (f"/{T_}/{ID}/$validate", "POST", validate),
    (f"/{T_}/{ID}/_history", "GET", instance_history),
    (f"/{T_}/{ID}/_history/{{version}}", "GET", vread),
]


def fhir_routes() -> list[Route]:
    """The routes of the FHIR base, merged per path so a wrong method answers 405."""
    methods: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for path, method, endpoint in _ROUTES:
        methods.setdefault(path, {})[method] = endpoint
    return [
        Route(path, _dispatcher(by_method), methods=list(by_method))
        for path, by_method in methods.items()
    ]


def _dispatcher(
    by_method: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    if len(by_method) == 1:
        return next(iter(by_method.values()))

    async def dispatch(request: Request) -> Response:
        return await by_method[request.method](request)

    return dispatch
