"""search (R4 http.html §3.1.0.9, search.html §3.1.1): a searchset Bundle with paging links."""

from __future__ import annotations

from typing import Any

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
    request, warnings = parse_search(
        resource_type,
        params,
        strict=ctx.strict_handling,
        default_count=ctx.settings.default_page_size,
        max_count=ctx.settings.max_page_size,
    )
    with ctx.read() as conn:
        page = execute_search(conn, request, extra_where=ctx.policy.search_filter(resource_type))

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
            shown = embed(ctx, row.res_type, row.body, summary=summary, elements=request.elements)
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


def _with_cursor(query: list[tuple[str, str]], cursor: str | None) -> list[tuple[str, str]]:
    return [*query, ("_cursor", cursor)] if cursor else query
