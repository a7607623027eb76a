"""Instance- and type-level interactions: create, read, vread, update, patch, delete.

R4 http.html §3.1.0.2 to §3.1.0.7 (read, vread, update, patch, delete, create) and their
conditional forms (§3.1.0.4.3, §3.1.0.7.1, §3.1.0.8.1). Every write validates the
resource, asks the access policy, stores a new version and rewrites the search index
in one transaction.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

import jsonpatch
import orjson
from sqlalchemy import Connection

from gateway.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from gateway.fhir.resource_types import is_stored_type
from gateway.fhir.validation import validate_resource
from gateway.policy.facts import client_of, consent_grant_rows
from gateway.policy.rules import access_rules
from gateway.search.extract import extract_index_rows
from gateway.search.query import StoredRow, find_matches
from gateway.search.values import format_instant
from gateway.services.context import RequestContext
from gateway.store import repository
from gateway.store.raw import RawExecutor
from gateway.store.repository import StaleVersion, StoredResource

# Elements the server owns in every stored resource (R4 resource.html §2.36.0.3 Meta).
SERVER_META = ("versionId", "lastUpdated")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: the stored version and whether it created the resource."""

    stored: StoredResource
    resource: dict[str, Any] | None
    created: bool = False
    changed: bool = True

    @property
    def status(self) -> int:
        return 201 if self.created else 200


def now_micros() -> int:
    return time.time_ns() // 1000


def new_id() -> str:
    """A server-assigned id: a UUID version 7 (RFC 9562 §5.7), 48 bits of Unix time in
    milliseconds followed by 74 random bits.

    Ids created one after another sit side by side in the ``(type, id)`` index instead
    of at random places, so a create dirties one B-tree page fewer (on SQLite, one WAL
    frame fewer at commit; on PostgreSQL, fewer index pages to write and to log). The
    time it reveals is the resource's first ``meta.lastUpdated``.
    """
    unix_ms = time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        unix_ms << 80
        | 0x7 << 76  # version
        | (rand >> 62 & 0xFFF) << 64  # rand_a
        | 0b10 << 62  # variant
        | rand & ((1 << 62) - 1)  # rand_b
    )
    return str(uuid.UUID(int=value))


def ensure_type(resource_type: str) -> None:
    """404 for a type this server does not store (R4 http.html §3.1.0.4)."""
    if not is_stored_type(resource_type):
        raise NotFound(f"Resource type '{resource_type}' is not supported by this server")


def parse_version_tag(if_match: str) -> int:
    """The version of an ETag such as ``W/"3"`` (R4 http.html §3.1.0.5.2 managing versions)."""
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise BadRequest(f"If-Match header '{if_match}' is not a version ETag such as W/\"1\"")
    return int(value)


def _check_body_type(resource_type: str, resource: dict[str, Any]) -> None:
    if resource.get("resourceType") != resource_type:
        raise BadRequest(
            f"The body is a {resource.get('resourceType')!r} but the URL names {resource_type!r}",
            expression=("resourceType",),
        )


def _validated(resource_type: str, resource: dict[str, Any]) -> None:
    issues = validate_resource(resource, expected_type=resource_type)
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues)


def _tag_custodian(resource: dict[str, Any], custodian: str | None) -> None:
    """Makes ``meta.tag`` show the custodian of the stored row, whatever the client sent
    (the custodian is set by the server and never changes)."""
    system = access_rules().custodian_tag_system
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    kept = (
        [t for t in tags if not (isinstance(t, dict) and t.get("system") == system)]
        if isinstance(tags, list)
        else []
    )
    if custodian is not None:
        kept.append({"system": system, "code": custodian})
    if kept or isinstance(tags, list):
        meta = dict(meta) if isinstance(meta, dict) else {}
        if kept:
            meta["tag"] = kept
        else:
            meta.pop("tag", None)
        resource["meta"] = meta


def _derived_rows(
    resource_type: str, resource_id: str, resource: dict[str, Any]
) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
    """The search-index and consent-grant rows of a resource, and its client."""
    rows = extract_index_rows(resource)
    if resource_type == "Consent":
        rows["consent_grant"] = consent_grant_rows(resource)
    return rows, client_of(resource_type, resource_id, rows)


def _stamp(resource: dict[str, Any], resource_id: str, version: int, now: int) -> bytes:
    """Sets id and server-owned meta (R4 resource.html Meta) and serialises the body."""
    resource["id"] = resource_id
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(now)
    resource["meta"] = meta
    return orjson.dumps(resource)


def _content_equal(stored_body: bytes | None, proposed: dict[str, Any]) -> bool:
    if stored_body is None:
        return False
    stored = orjson.loads(stored_body)

    def strip(res: dict[str, Any]) -> dict[str, Any]:
        copy = dict(res)
        meta = {k: v for k, v in (copy.get("meta") or {}).items() if k not in SERVER_META}
        if meta:
            copy["meta"] = meta
        else:
            copy.pop("meta", None)
        return copy

    return strip(stored) == strip(proposed)


def _check_write(
    ctx: RequestContext, resource_type: str, resource_id: str, current: StoredResource | None
) -> None:
    """Asks the policy whether the requester may write over ``current`` (None: a new
    resource, which becomes the requester's own)."""
    if ctx.requester is None:
        return
    existing = current is not None and not current.deleted and current.body is not None
    decision = ctx.policy.check_write(
        resource_type,
        resource_id,
        current.custodian if current else None,
        orjson.loads(current.body) if existing and current and current.body else None,
        current.client if current else None,
    )
    if not decision.permitted:
        raise Forbidden(
            f"Writing {resource_type}/{resource_id} is not permitted: {decision.reason}"
        )


def lock_conditions(
    ctx: RequestContext, conn: Connection, conditions: Iterable[tuple[str, str]]
) -> None:
    """Serialises conditional writes with the same (type, criteria) until the
    transaction ends: each condition is locked once per transaction, and those locked
    together in one order, so writers that lock several never wait for each other in a
    cycle."""
    db = RawExecutor.of(conn)
    for condition in sorted(set(conditions) - ctx.locked_conditions):
        db.lock_transaction_key(f"{condition[0]}?{condition[1]}")
        ctx.locked_conditions.add(condition)


def _single_match(
    ctx: RequestContext, conn: Connection, resource_type: str, criteria: str, what: str
) -> StoredRow | None:
    """The one visible resource a conditional write's criteria match (R4 http.html
    §3.1.0.8.1, §3.1.0.4.3, §3.1.0.7.1), None for none, 412 for several (``what``
    begins the message); writes with the same criteria are serialised first."""
    lock_conditions(ctx, conn, [(resource_type, criteria)])
    matches = find_matches(
        conn, resource_type, parse_qsl(criteria), limit=2, visibility=ctx.policy.visibility()
    )
    if len(matches) > 1:
        raise PreconditionFailed(f"{what} {len(matches)} resources")
    return matches[0] if matches else None


def _current_for_write(
    ctx: RequestContext, conn: Connection, resource_type: str, resource_id: str
) -> StoredResource | None:
    key = (resource_type, resource_id)
    if key in ctx.locked_current:
        return ctx.locked_current.pop(key)
    return repository.get_current(
        RawExecutor.of(conn), resource_type, resource_id, for_update=ctx.db.is_postgresql
    )


def _insert(
    ctx: RequestContext,
    conn: Connection,
    resource_type: str,
    resource_id: str,
    resource: dict[str, Any],
    method: str = "POST",
) -> WriteResult:
    now = now_micros()
    custodian = ctx.policy.custodian
    _tag_custodian(resource, custodian)
    body = _stamp(resource, resource_id, 1, now)
    rows, client = _derived_rows(resource_type, resource_id, resource)
    try:
        pk = repository.insert_new(
            RawExecutor.of(conn),
            res_type=resource_type,
            res_id=resource_id,
            body=body,
            now=now,
            index_rows=rows,
            method=method,
            custodian=custodian,
            client=client,
        )
    except conn.dialect.loaded_dbapi.IntegrityError as exc:
        # The whole transaction rolls back with this error: nothing is half-written.
        raise Conflict(
            f"{resource_type}/{resource_id} was created by another request at the same time"
        ) from exc
    stored = StoredResource(
        pk, resource_type, resource_id, 1, now, False, body, method, custodian, client
    )
    ctx.wrote(conn, stored, None)
    return WriteResult(stored=stored, resource=resource, created=True)


def _new_version(
    ctx: RequestContext,
    conn: Connection,
    current: StoredResource,
    resource: dict[str, Any] | None,
    method: str,
) -> WriteResult:
    now = max(now_micros(), current.last_updated + 1)
    version = current.version + 1
    body: bytes | None = None
    rows: dict[str, list[dict[str, Any]]] = {}
    client = current.client
    if resource is not None:
        _tag_custodian(resource, current.custodian)
        body = _stamp(resource, current.res_id, version, now)
        rows, client = _derived_rows(current.res_type, current.res_id, resource)
    try:
        repository.replace_current(
            RawExecutor.of(conn),
            current=current,
            version=version,
            body=body,
            now=now,
            method=method,
            index_rows=rows,
            client=client,
        )
    except StaleVersion as exc:
        raise Conflict(
            f"{current.res_type}/{current.res_id} was changed by another request; read it again"
        ) from exc
    stored = StoredResource(
        current.pk,
        current.res_type,
        current.res_id,
        version,
        now,
        body is None,
        body,
        method,
        current.custodian,
        client,
    )
    ctx.wrote(conn, stored, current)
    return WriteResult(stored=stored, resource=resource, created=current.deleted)


def create_resource(
    ctx: RequestContext,
    *,
    resource_type: str,
    resource: dict[str, Any],
    if_none_exist: str | None = None,
    assigned_id: str | None = None,
) -> WriteResult:
    """create (R4 http.html §3.1.0.8) and conditional create (§3.1.0.8.1).

    The server assigns the id; ``assigned_id`` is the one a transaction Bundle decided.
    """
    ensure_type(resource_type)
    ctx.authorize(resource_type, "create")
    _check_body_type(resource_type, resource)
    resource.pop("id", None)
    _validated(resource_type, resource)
    with ctx.write() as conn:
        if if_none_exist:
            existing = _single_match(
                ctx, conn, resource_type, if_none_exist, f"If-None-Exist '{if_none_exist}' matches"
            )
            if existing is not None:
                return WriteResult(
                    stored=StoredResource(
                        existing.pk,
                        existing.res_type,
                        existing.res_id,
                        existing.version,
                        existing.last_updated,
                        False,
                        existing.body,
                        "",
                        existing.custodian,
                        existing.client,
                    ),
                    resource=None,
                    created=False,
                    changed=False,
                )
        return _insert(ctx, conn, resource_type, assigned_id or new_id(), resource)


def read_resource(ctx: RequestContext, *, resource_type: str, resource_id: str) -> StoredResource:
    """read (R4 http.html §3.1.0.2): 404 unknown, 410 deleted."""
    ensure_type(resource_type)
    ctx.authorize(resource_type, "read")
    with ctx.read_raw() as db:
        stored = repository.get_current(db, resource_type, resource_id)
    if stored is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if stored.deleted:
        raise Gone(
            f"{resource_type}/{resource_id} was deleted",
            headers={"ETag": f'W/"{stored.version}"'},
        )
    return _visible(ctx, stored)


def _visible(ctx: RequestContext, stored: StoredResource) -> StoredResource:
    """The form of one stored resource the policy lets the requester see; a resource it
    may not see is answered as unknown (404), never as forbidden."""
    if stored.body is None:
        return stored
    shown = ctx.policy.disclose(
        stored.res_type, stored.res_id, stored.custodian, stored.client, stored.body
    )
    if shown is None:
        raise NotFound(f"{stored.res_type}/{stored.res_id} is not known")
    if isinstance(shown, bytes):
        return stored
    return replace(stored, body=orjson.dumps(shown))


def vread_resource(
    ctx: RequestContext, *, resource_type: str, resource_id: str, version: str
) -> StoredResource:
    """vread (R4 http.html §3.1.0.3)."""
    ensure_type(resource_type)
    ctx.authorize(resource_type, "read")
    if not version.isdigit():
        raise NotFound(f"{resource_type}/{resource_id} has no version '{version}'")
    with ctx.read_raw() as db:
        stored = repository.get_version(db, resource_type, resource_id, int(version))
    if stored is None:
        raise NotFound(f"{resource_type}/{resource_id} has no version {version}")
    if stored.deleted:
        raise Gone(f"Version {version} of {resource_type}/{resource_id} is a deletion")
    return _visible(ctx, stored)


def update_resource(
    ctx: RequestContext,
    *,
    resource_type: str,
    resource_id: str,
    resource: dict[str, Any],
    if_match: str | None = None,
) -> WriteResult:
    """update (R4 http.html §3.1.0.4), update-as-create with a client id, and If-Match
    version checks (§3.1.0.5.2, 412 on a stale version)."""
    ensure_type(resource_type)
    ctx.authorize(resource_type, "update")
    _check_body_type(resource_type, resource)
    body_id = resource.get("id")
    if body_id is None:
        raise BadRequest("The resource in an update must have an id", expression=("id",))
    if body_id != resource_id:
        raise BadRequest(
            f"The resource id '{body_id}' does not match the URL id '{resource_id}'",
            expression=(f"{resource_type}.id",),
        )
    _validated(resource_type, resource)
    expected = parse_version_tag(if_match) if if_match else None
    with ctx.write() as conn:
        current = _current_for_write(ctx, conn, resource_type, resource_id)
        return _write_over(
            ctx, conn, resource_type, resource_id, current, resource, expected, "PUT"
        )


def _write_over(
    ctx: RequestContext,
    conn: Connection,
    resource_type: str,
    resource_id: str,
    current: StoredResource | None,
    resource: dict[str, Any],
    expected_version: int | None,
    method: str,
    *,
    checked: bool = False,
) -> WriteResult:
    if expected_version is not None and (current is None or current.version != expected_version):
        have = "does not exist" if current is None else f"is at version {current.version}"
        raise PreconditionFailed(
            f"{resource_type}/{resource_id} {have}, not version {expected_version} (If-Match)"
        )
    if not checked:
        _check_write(ctx, resource_type, resource_id, current)
    if current is None:
        return _insert(ctx, conn, resource_type, resource_id, resource, method)
    _tag_custodian(resource, current.custodian)
    if not current.deleted and _content_equal(current.body, resource):
        return WriteResult(stored=current, resource=None, changed=False)
    return _new_version(ctx, conn, current, resource, method)


def conditional_update(
    ctx: RequestContext,
    *,
    resource_type: str,
    criteria: str,
    resource: dict[str, Any],
    if_match: str | None = None,
) -> WriteResult:
    """Conditional update (R4 http.html §3.1.0.4.3): none → create, one → update, many → 412."""
    ensure_type(resource_type)
    ctx.authorize(resource_type, "update")
    _check_body_type(resource_type, resource)
    _validated(resource_type, resource)
    expected = parse_version_tag(if_match) if if_match else None
    with ctx.write() as conn:
        match = _single_match(
            ctx, conn, resource_type, criteria, f"Conditional update criteria '{criteria}' match"
        )
        body_id = resource.get("id")
        if match is not None:
            target_id = match.res_id
            if body_id is not None and body_id != target_id:
                raise BadRequest(
                    f"The resource id '{body_id}' does not match the resource found ({target_id})",
                    expression=(f"{resource_type}.id",),
                )
        else:
            target_id = body_id if isinstance(body_id, str) else new_id()
        current = _current_for_write(ctx, conn, resource_type, target_id)
        return _write_over(ctx, conn, resource_type, target_id, current, resource, expected, "PUT")


def patch_resource(
    ctx: RequestContext,
    *,
    resource_type: str,
    resource_id: str,
    patch: Any,
    if_match: str | None = None,
) -> WriteResult:
    """patch with JSON Patch (R4 http.html §3.1.0.6, RFC 6902)."""
    ensure_type(resource_type)
    ctx.authorize(resource_type, "update")
    if not isinstance(patch, list):
        raise BadRequest("A JSON Patch document must be a JSON array of operations")
    expected = parse_version_tag(if_match) if if_match else None
    with ctx.write() as conn:
        current = _current_for_write(ctx, conn, resource_type, resource_id)
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        if current.deleted or current.body is None:
            raise Gone(f"{resource_type}/{resource_id} was deleted")
        _check_write(ctx, resource_type, resource_id, current)
        original = orjson.loads(current.body)
        try:
            patched = jsonpatch.apply_patch(original, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise Unprocessable(f"The JSON Patch cannot be applied: {exc}") from exc
        except (TypeError, KeyError, ValueError) as exc:
            raise BadRequest(f"The JSON Patch document is malformed: {exc}") from exc
        if not isinstance(patched, dict) or patched.get("resourceType") != resource_type:
            raise Unprocessable(
                "A patch may not change the resource type", expression=("resourceType",)
            )
        if patched.get("id") != resource_id:
            raise Unprocessable("A patch may not change the resource id", expression=("id",))
        _validated(resource_type, patched)
        return _write_over(
            ctx, conn, resource_type, resource_id, current, patched, expected, "PATCH", checked=True
        )


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: int


def delete_resource(
    ctx: RequestContext, *, resource_type: str, resource_id: str, if_match: str | None = None
) -> DeleteResult:
    """delete (R4 http.html §3.1.0.7): a deletion version is recorded; reads then answer 410.

    Deleting an unknown or already deleted resource succeeds and changes nothing.
    """
    ensure_type(resource_type)
    ctx.authorize(resource_type, "delete")
    expected = parse_version_tag(if_match) if if_match else None
    with ctx.write() as conn:
        current = _current_for_write(ctx, conn, resource_type, resource_id)
        if expected is not None and (current is None or current.version != expected):
            raise PreconditionFailed(
                f"{resource_type}/{resource_id} is not at version {expected} (If-Match)"
            )
        if current is None or current.deleted:
            return DeleteResult(deleted=0)
        _check_write(ctx, resource_type, resource_id, current)
        _new_version(ctx, conn, current, None, "DELETE")
        return DeleteResult(deleted=1)


def conditional_delete(ctx: RequestContext, *, resource_type: str, criteria: str) -> DeleteResult:
    """Conditional delete (R4 http.html §3.1.0.7.1): one match deleted; several → 412."""
    ensure_type(resource_type)
    ctx.authorize(resource_type, "delete")
    if not criteria:
        raise MethodNotAllowed("A delete on the type needs search criteria (conditional delete)")
    with ctx.write() as conn:
        match = _single_match(
            ctx, conn, resource_type, criteria, f"Conditional delete criteria '{criteria}' match"
        )
        if match is None:
            return DeleteResult(deleted=0)
        return delete_resource(ctx, resource_type=resource_type, resource_id=match.res_id)
