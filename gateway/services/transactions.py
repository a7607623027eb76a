"""transaction and batch Bundles (R4 http.html §3.1.0.11).

A transaction runs every entry in one database transaction: all succeed or nothing
is written. Before processing, ``urn:uuid:`` and other fullUrls of created/updated
resources get their ids and every reference to them is rewritten, and conditional
references (``Type?criteria``) are resolved (§3.1.0.11.2 resolving references). Entries
are processed in the order the specification prescribes: DELETE, POST, PUT/PATCH,
then GET/HEAD, and answered in the order they were given.

A batch runs each entry on its own; a failing entry answers with its OperationOutcome.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy import Connection

from gateway.errors import (
    BadRequest,
    FhirError,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
)
from gateway.search.query import find_matches
from gateway.search.values import format_instant
from gateway.services import history as history_service
from gateway.services import resources as resource_service
from gateway.services import search as search_service
from gateway.services.bundles_out import bundle
from gateway.services.context import RequestContext
from gateway.services.resources import WriteResult, ensure_type, new_id, now_micros
from gateway.store import repository
from gateway.store.raw import RawExecutor


def status_text(code: int) -> str:
    """``Bundle.entry.response.status``: the code and its reason phrase (http.html §3.1.0.11)."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


PROCESSING_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    """One request of a Bundle, with its URL already split."""

    index: int
    method: str
    url: str
    resource_type: str | None
    resource_id: str | None
    tail: list[str]
    query: str
    full_url: str | None
    resource: dict[str, Any] | None
    if_none_exist: str | None
    if_match: str | None
    assigned_id: str | None = None
    existing: bool = False

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _parse_entry(ctx: RequestContext, index: int, raw: Any) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} is not an object", expression=(where,))
    request = raw.get("request")
    if not isinstance(request, dict):
        raise BadRequest(f"{where} has no request", expression=(f"{where}.request",))
    method = str(request.get("method", "")).upper()
    if method not in PROCESSING_ORDER:
        raise BadRequest(
            f"{where}.request.method '{request.get('method')}' is not a FHIR interaction",
            expression=(f"{where}.request.method",),
        )
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.request.url is missing", expression=(f"{where}.request.url",))
    if url.startswith(ctx.base_url + "/"):
        url = url[len(ctx.base_url) + 1 :]
    split = urlsplit(url)
    if split.scheme:
        raise BadRequest(
            f"{where}.request.url '{url}' is not on this server",
            expression=(f"{where}.request.url",),
        )
    parts = [p for p in split.path.split("/") if p]
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise BadRequest(f"{where}.resource is not a resource", expression=(f"{where}.resource",))
    if method in ("POST", "PUT") and resource is None:
        raise BadRequest(f"{where} ({method}) has no resource", expression=(f"{where}.resource",))
    return Entry(
        index=index,
        method=method,
        url=url,
        resource_type=parts[0] if parts else None,
        resource_id=parts[1] if len(parts) > 1 and not parts[1].startswith("_") else None,
        tail=parts[2:] if len(parts) > 1 and not parts[1].startswith("_") else parts[1:],
        query=split.query,
        full_url=raw.get("fullUrl"),
        resource=resource,
        if_none_exist=request.get("ifNoneExist"),
        if_match=request.get("ifMatch"),
    )


def process_bundle(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    """Runs a transaction or batch Bundle posted to the base URL."""
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise BadRequest(
            f"A Bundle posted to the base must be a transaction or batch, not '{kind}'",
            expression=("Bundle.type",),
        )
    raw_entries = body.get("entry") or []
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be a list", expression=("Bundle.entry",))
    if len(raw_entries) > ctx.settings.max_transaction_entries:
        raise BadRequest(
            f"The Bundle has {len(raw_entries)} entries; at most "
            f"{ctx.settings.max_transaction_entries} are accepted"
        )
    if kind == "transaction":
        return _transaction(ctx, [_parse_entry(ctx, i, e) for i, e in enumerate(raw_entries)])
    return _batch(ctx, raw_entries)


def _transaction(ctx: RequestContext, entries: list[Entry]) -> dict[str, Any]:
    responses: dict[int, dict[str, Any]] = {}
    current: Entry | None = None
    try:
        with ctx.write() as conn:
            resource_service.lock_conditions(ctx, conn, _conditions(entries))
            references = _assign_ids(ctx, conn, entries)
            for entry in entries:
                if entry.resource is not None:
                    _rewrite_references(ctx, conn, entry.resource, references, entry.where)
            targets = [t for t in map(_write_target, entries) if t is not None]
            if targets and ctx.db.is_postgresql:
                # One round trip for every current version the entries will lock.
                ctx.locked_current = repository.lock_current(RawExecutor.of(conn), targets)
            try:
                for entry in sorted(entries, key=lambda e: (PROCESSING_ORDER[e.method], e.index)):
                    current = entry
                    responses[entry.index] = _run(ctx, entry, in_transaction=True)
            finally:
                ctx.locked_current = {}
    except FhirError as error:
        if current is not None:
            where = f"{current.where} ({current.method} {current.url})"
            error.diagnostics = f"Transaction failed at {where}: {error.diagnostics}"
            for issue_index, issue in enumerate(error.issues):
                error.issues[issue_index] = type(issue)(
                    issue.severity,
                    issue.code,
                    f"Transaction failed at {where}: {issue.diagnostics}",
                    issue.expression,
                )
        raise
    return bundle(
        "transaction-response",
        now_micros=now_micros(),
        entry=[responses[e.index] for e in entries] or None,
    )


def _batch(ctx: RequestContext, raw_entries: list[Any]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = _parse_entry(ctx, index, raw)
            if entry.resource is not None:
                with ctx.read() as conn:
                    _rewrite_references(ctx, conn, entry.resource, {}, entry.where)
            results.append(_run(ctx, entry, in_transaction=False))
        except FhirError as error:
            results.append(
                {
                    "response": {
                        "status": status_text(error.status),
                        "outcome": error.outcome(),
                    }
                }
            )
    return bundle("batch-response", now_micros=now_micros(), entry=results or None)


def conditions_of(ctx: RequestContext, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, criteria) of the conditional writes of the transaction Bundle ``body``,
    for a caller that must lock them (``resources.lock_conditions``) before it reads
    what the Bundle's outcome depends on."""
    entries = body.get("entry") or []
    return list(_conditions([_parse_entry(ctx, i, raw) for i, raw in enumerate(entries)]))


def _conditions(entries: list[Entry]) -> Iterator[tuple[str, str]]:
    """(type, criteria) of every conditional create, update and delete of a Bundle: two
    transactions with the same one must not both find no match and both create."""
    for entry in entries:
        if not entry.resource_type:
            continue
        if entry.method == "POST" and entry.if_none_exist:
            yield entry.resource_type, entry.if_none_exist
        elif entry.method in ("PUT", "DELETE") and entry.resource_id is None and entry.query:
            yield entry.resource_type, entry.query


def _write_target(entry: Entry) -> tuple[str, str] | None:
    """The resource (type, id) that a PUT, PATCH or DELETE entry writes, if its id is known."""
    if entry.method == "PUT":
        target = entry.assigned_id or entry.resource_id
    elif entry.method in ("PATCH", "DELETE"):
        target = entry.resource_id
    else:
        return None
    return (entry.resource_type, target) if entry.resource_type and target else None


def _assign_ids(ctx: RequestContext, conn: Connection, entries: list[Entry]) -> dict[str, str]:
    """Decides the id of every created/updated resource and maps fullUrls to ``Type/id``."""
    references: dict[str, str] = {}
    for entry in entries:
        if entry.method == "POST" and entry.resource_type:
            ensure_type(entry.resource_type)
            if entry.if_none_exist:
                matches = find_matches(
                    conn,
                    entry.resource_type,
                    parse_qsl(entry.if_none_exist),
                    limit=2,
                    visibility=ctx.policy.visibility(),
                )
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"{entry.where}: ifNoneExist '{entry.if_none_exist}' matches "
                        f"{len(matches)} resources"
                    )
                if matches:
                    entry.assigned_id, entry.existing = matches[0].res_id, True
            entry.assigned_id = entry.assigned_id or new_id()
        elif entry.method == "PUT" and entry.resource_type:
            ensure_type(entry.resource_type)
            if entry.resource_id is None and entry.query:
                matches = find_matches(
                    conn,
                    entry.resource_type,
                    parse_qsl(entry.query),
                    limit=2,
                    visibility=ctx.policy.visibility(),
                )
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"{entry.where}: conditional update '{entry.url}' matches "
                        f"{len(matches)} resources"
                    )
                body_id = (entry.resource or {}).get("id")
                entry.assigned_id = matches[0].res_id if matches else (body_id or new_id())
            else:
                entry.assigned_id = entry.resource_id
        if entry.full_url and entry.assigned_id and entry.resource_type:
            references[entry.full_url] = f"{entry.resource_type}/{entry.assigned_id}"
    return references


def _rewrite_references(
    ctx: RequestContext,
    conn: Connection,
    node: Any,
    references: dict[str, str],
    where: str,
) -> None:
    """Replaces fullUrl and conditional references inside one resource, in place."""
    # Exact type checks: the body is parsed JSON, whose objects and arrays are plain
    # dicts and lists, and most of its values are neither.
    if type(node) is dict:
        reference = node.get("reference")
        if type(reference) is str:
            node["reference"] = _resolve_reference(ctx, conn, reference, references, where)
        for value in node.values():
            if type(value) is dict or type(value) is list:
                _rewrite_references(ctx, conn, value, references, where)
    elif type(node) is list:
        for item in node:
            if type(item) is dict or type(item) is list:
                _rewrite_references(ctx, conn, item, references, where)


def _resolve_reference(
    ctx: RequestContext, conn: Connection, reference: str, references: dict[str, str], where: str
) -> str:
    if reference in references:
        return references[reference]
    if reference.startswith(ctx.base_url + "/"):
        return reference[len(ctx.base_url) + 1 :]
    if reference.startswith("urn:uuid:") or reference.startswith("urn:oid:"):
        raise NotFound(f"{where}: reference '{reference}' names no entry of this Bundle")
    if "?" in reference and "://" not in reference:
        resource_type, _, criteria = reference.partition("?")
        ensure_type(resource_type)
        matches = find_matches(
            conn, resource_type, parse_qsl(criteria), limit=2, visibility=ctx.policy.visibility()
        )
        if len(matches) != 1:
            raise PreconditionFailed(
                f"{where}: conditional reference '{reference}' matches {len(matches)} resources, "
                "not exactly one"
            )
        resolved = f"{resource_type}/{matches[0].res_id}"
        references[reference] = resolved
        return resolved
    return reference


def _write_response(result: WriteResult) -> dict[str, Any]:
    stored = result.stored
    return {
        "response": {
            "status": status_text(result.status),
            "location": f"{stored.res_type}/{stored.res_id}/_history/{stored.version}",
            "etag": f'W/"{stored.version}"',
            "lastModified": format_instant(stored.last_updated),
        }
    }


def _json_patch_of(entry: Entry) -> Any:
    """A PATCH entry carries its JSON Patch as a Binary resource (http.html §3.1.0.6)."""
    binary = entry.resource
    if not binary or binary.get("resourceType") != "Binary" or "data" not in binary:
        raise BadRequest(
            f"{entry.where}: a PATCH entry needs a Binary resource holding a JSON Patch",
            expression=(f"{entry.where}.resource",),
        )
    try:
        return orjson.loads(base64.b64decode(binary["data"], validate=True))
    except (binascii.Error, orjson.JSONDecodeError, ValueError) as exc:
        raise BadRequest(f"{entry.where}: the Binary does not hold a JSON Patch") from exc


def _run(ctx: RequestContext, entry: Entry, *, in_transaction: bool) -> dict[str, Any]:
    if entry.resource_type is None:
        if entry.method == "GET" and entry.tail == ["_history"]:
            return _ok(history_service.history(ctx, params=parse_qsl(entry.query)))
        raise BadRequest(f"{entry.where}: request url '{entry.url}' names no resource type")
    resource_type = entry.resource_type
    if entry.method == "POST":
        if entry.tail:
            raise MethodNotAllowed(f"{entry.where}: POST to '{entry.url}' is not supported")
        assert entry.resource is not None
        if entry.existing:
            return _ok_existing(ctx, resource_type, entry.assigned_id or "")
        result = resource_service.create_resource(
            ctx,
            resource_type=resource_type,
            resource=entry.resource,
            if_none_exist=None if in_transaction else entry.if_none_exist,
            assigned_id=entry.assigned_id,
        )
        return _write_response(result)
    if entry.method == "PUT":
        assert entry.resource is not None
        if entry.resource_id is None and not in_transaction:
            result = resource_service.conditional_update(
                ctx,
                resource_type=resource_type,
                criteria=entry.query,
                resource=entry.resource,
                if_match=entry.if_match,
            )
        else:
            target = entry.assigned_id or entry.resource_id or ""
            entry.resource.setdefault("id", target)
            result = resource_service.update_resource(
                ctx,
                resource_type=resource_type,
                resource_id=target,
                resource=entry.resource,
                if_match=entry.if_match,
            )
        return _write_response(result)
    if entry.method == "PATCH":
        if entry.resource_id is None:
            raise MethodNotAllowed(f"{entry.where}: PATCH needs Type/id")
        result = resource_service.patch_resource(
            ctx,
            resource_type=resource_type,
            resource_id=entry.resource_id,
            patch=_json_patch_of(entry),
            if_match=entry.if_match,
        )
        return _write_response(result)
    if entry.method == "DELETE":
        if entry.resource_id is not None:
            resource_service.delete_resource(
                ctx,
                resource_type=resource_type,
                resource_id=entry.resource_id,
                if_match=entry.if_match,
            )
        else:
            resource_service.conditional_delete(
                ctx, resource_type=resource_type, criteria=entry.query
            )
        return {"response": {"status": status_text(204)}}
    # GET / HEAD
    if entry.resource_id is None:
        listing = (
            history_service.history if entry.tail == ["_history"] else search_service.search_type
        )
        return _ok(listing(ctx, resource_type=resource_type, params=parse_qsl(entry.query)))
    if entry.tail == ["_history"]:
        return _ok(
            history_service.history(
                ctx,
                resource_type=resource_type,
                resource_id=entry.resource_id,
                params=parse_qsl(entry.query),
            )
        )
    if len(entry.tail) == 2 and entry.tail[0] == "_history":
        stored = resource_service.vread_resource(
            ctx, resource_type=resource_type, resource_id=entry.resource_id, version=entry.tail[1]
        )
    elif not entry.tail:
        stored = resource_service.read_resource(
            ctx, resource_type=resource_type, resource_id=entry.resource_id
        )
    else:
        raise BadRequest(f"{entry.where}: request url '{entry.url}' is not supported")
    assert stored.body is not None
    return {
        "resource": orjson.Fragment(stored.body),
        "response": {
            "status": status_text(200),
            "etag": f'W/"{stored.version}"',
            "lastModified": format_instant(stored.last_updated),
        },
    }


def _ok(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "response": {"status": status_text(200)}}


def _ok_existing(ctx: RequestContext, resource_type: str, resource_id: str) -> dict[str, Any]:
    stored = resource_service.read_resource(
        ctx, resource_type=resource_type, resource_id=resource_id
    )
    return {
        "response": {
            "status": status_text(200),
            "location": f"{resource_type}/{resource_id}/_history/{stored.version}",
            "etag": f'W/"{stored.version}"',
            "lastModified": format_instant(stored.last_updated),
        }
    }
