"""history (R4 http.html §3.1.0.7 history): instance, type and system level.

Versions come newest first; paging is keyset-based on (lastUpdated, resource, version)
so ``next`` links stay correct while others write.
"""

from __future__ import annotations

from typing import Any

from gateway.auth.scopes import permits
from gateway.auth.tokens import InsufficientScope
from gateway.errors import BadRequest, NotFound
from gateway.search.cursor import ColumnKind, Cursor, decode_cursor, encode_cursor
from gateway.search.values import date_range, format_instant
from gateway.services.bundles_out import bundle, embed, link_url
from gateway.services.context import RequestContext
from gateway.services.resources import ensure_type, now_micros
from gateway.store import repository
from gateway.store.raw import RawExecutor

_HISTORY_ORDER = "_history"  # the fixed order of history: lastUpdated, resource, version
_HISTORY_KINDS: tuple[ColumnKind, ...] = ("int", "int", "int")


def history(
    ctx: RequestContext,
    *,
    resource_type: str | None = None,
    resource_id: str | None = None,
    params: list[tuple[str, str]],
) -> dict[str, Any]:
    """The history Bundle of one resource, one type, or the whole system."""
    if resource_type is not None:
        ensure_type(resource_type)
        ctx.authorize(resource_type, "read" if resource_id is not None else "search")
    elif ctx.requester is not None and not permits(ctx.requester.scopes, "*", "search"):
        raise InsufficientScope("System history needs a search scope on every type (system/*.s)")
    count = ctx.settings.default_page_size
    since: int | None = None
    at: tuple[int, int] | None = None
    cursor: tuple[int, int, int] | None = None
    for name, value in params:
        try:
            if name == "_count":
                count = max(0, min(int(value), ctx.settings.max_page_size))
            elif name == "_since":
                since = date_range(value)[0]
            elif name == "_at":
                at = date_range(value)
            elif name == "_cursor":
                cursor = _position(
                    decode_cursor(value, sort_signature=_HISTORY_ORDER, kinds=_HISTORY_KINDS)
                )
        except ValueError as exc:
            raise BadRequest(
                f"Invalid value '{value}' for {name}: {exc}", expression=(name,)
            ) from exc

    visibility = ctx.policy.visibility()
    with ctx.read() as conn:
        if resource_id is not None and resource_type is not None:
            current = repository.get_current(RawExecutor.of(conn), resource_type, resource_id)
            if current is None or (
                current.body is not None
                and ctx.policy.disclose(
                    resource_type, resource_id, current.custodian, current.client, current.body
                )
                is None
            ):
                raise NotFound(f"{resource_type}/{resource_id} is not known")
        rows = repository.history(
            conn,
            res_type=resource_type,
            res_id=resource_id,
            since=since,
            at=at,
            before=cursor,
            limit=count + 1,
            visibility=visibility,
        )
    has_next = len(rows) > count
    rows = rows[:count]

    base = ctx.base_url
    if resource_type:
        base += f"/{resource_type}"
    if resource_id:
        base += f"/{resource_id}"
    base += "/_history"
    query = [(n, v) for n, v in params if n != "_cursor"]
    links = [{"relation": "self", "url": link_url(base, list(params))}]
    if has_next and rows:
        last = rows[-1]
        token = encode_cursor(
            Cursor((last.last_updated, last.pk, last.version), sort_signature=_HISTORY_ORDER)
        )
        links.append({"relation": "next", "url": link_url(base, [*query, ("_cursor", token)])})

    entries: list[dict[str, Any]] = []
    for row in rows:
        entry: dict[str, Any] = {"fullUrl": ctx.url_for(row.res_type, row.res_id)}
        if row.body is not None:
            shown = embed(ctx, row)
            if shown is None:
                continue
            entry["resource"] = shown
        method = row.method
        url = row.res_type if method == "POST" else f"{row.res_type}/{row.res_id}"
        entry["request"] = {"method": method, "url": url}
        entry["response"] = {
            "status": {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK"),
            "etag": f'W/"{row.version}"',
            "lastModified": format_instant(row.last_updated),
        }
        entries.append(entry)
    return bundle(
        "history",
        now_micros=now_micros(),
        total=None,
        link=links,
        entry=entries or None,
    )


def _position(cursor: Cursor) -> tuple[int, int, int]:
    updated, pk, version = (int(v) for v in cursor.position)
    return updated, pk, version
