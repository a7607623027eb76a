"""search (R4 http.html §3.1.0.9, search.html §3.1.1): a searchset Bundle with paging links."""

from __future__ import annotations

from typing import Any

from gateway.auth.scopes import permits
from gateway.errors import operation_outcome
from gateway.search.params import parse_search
from gateway.search.query import execute_search
from gateway.services.bundles_out import bundle, embed, link_url
from gateway.services.context import RequestContext
from gateway.services.resources import ensure_type, now_micros


def search_type(
    ctx: RequestContext, *, resource_type: str, params: list[tuple[str, str]]
) -> dict[str, Any]:
    """Searches one resource type; returns the searchset Bundle."""
    ensure_type(resource_type)
    ctx.authorize(resource_type, "search")
    request, warnings = parse_search(
        resource_type,
        params,
        strict=ctx.strict_handling,
        default_count=ctx.settings.default_page_size,
        max_count=ctx.settings.max_page_size,
    )
    with ctx.read() as conn:
        page = execute_search(conn, request, visibility=ctx.policy.visibility())

    base = f"{ctx.base_url}/{resource_type}"
    query = request.canonical_query()
    links = [{"relation": "self", "url": link_url(base, _with_cursor(query, request.cursor))}]
    if page.next_cursor:
        links.append(
            {"relation": "next", "url": link_url(base, _with_cursor(query, page.next_cursor))}
        )
    if page.previous_cursor:
        links.append(
            {
                "relation": "previous",
                "url": link_url(base, _with_cursor(query, page.previous_cursor)),
            }
        )

    entries: list[dict[str, Any]] = []
    summary = request.summary if request.summary not in (None, "false", "count") else None
    for mode, rows in (("match", page.matches), ("include", page.included)):
        for row in rows:
            if mode == "include" and not _may_read(ctx, row.res_type):
                continue
            shown = embed(ctx, row, summary=summary, elements=request.elements)
            if shown is None:
                continue
            entries.append(
                {
                    "fullUrl": ctx.url_for(row.res_type, row.res_id),
                    "resource": shown,
                    "search": {"mode": mode},
                }
            )
    if warnings:
        entries.append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
    return bundle(
        "searchset",
        now_micros=now_micros(),
        total=page.total,
        link=links,
        entry=entries or None,
    )


def _may_read(ctx: RequestContext, resource_type: str) -> bool:
    """Included resources of another type need the token's read scope for that type."""
    requester = ctx.requester
    return requester is None or permits(requester.scopes, resource_type, "read")


def _with_cursor(query: list[tuple[str, str]], cursor: str | None) -> list[tuple[str, str]]:
    return [*query, ("_cursor", cursor)] if cursor else query
