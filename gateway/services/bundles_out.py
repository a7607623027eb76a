"""Building response Bundles (searchset, history) with stored JSON embedded unparsed.

Stored bodies are embedded with ``orjson.Fragment`` so a page of results is written
without decoding and re-encoding each resource, unless the resource must be changed
(policy redaction, ``_summary``, ``_elements``). R4 bundle.html §2.36.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.fhir.elements import apply_elements, apply_summary
from gateway.search.values import format_instant
from gateway.services.context import RequestContext


def embed(
    ctx: RequestContext,
    res_type: str,
    body: bytes,
    *,
    summary: str | None = None,
    elements: tuple[str, ...] | None = None,
) -> Any:
    """The resource of a bundle entry: raw bytes when nothing changes it, else a dict.

    Returns None when the policy does not let the requester see it.
    """
    policy = ctx.policy
    if not policy.inspects_content and not summary and not elements:
        return orjson.Fragment(body)
    resource: dict[str, Any] = orjson.loads(body)
    if policy.inspects_content:
        if not policy.can_see(res_type, resource).permitted:
            return None
        resource = policy.will_see(res_type, resource)
    if summary:
        resource = apply_summary(resource, summary)
    if elements:
        resource = apply_elements(resource, elements)
    return resource


def link_url(base: str, query: list[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(query)}" if query else base


def bundle(bundle_type: str, *, now_micros: int, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"lastUpdated": format_instant(now_micros)},
        "type": bundle_type,
    }
    result.update({k: v for k, v in fields.items() if v is not None})
    return result
