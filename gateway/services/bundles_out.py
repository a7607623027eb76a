"""Building response Bundles (searchset, history) with stored JSON embedded unparsed.

Stored bodies are embedded with ``orjson.Fragment`` so a page of results is written
without decoding and re-encoding each resource, unless the resource must be changed
(policy redaction, ``_summary``, ``_elements``). Every resource passes the access
policy. R4 bundle.html §2.36.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.fhir.elements import apply_elements, apply_summary
from gateway.search.query import StoredRow
from gateway.search.values import format_instant
from gateway.services.context import RequestContext
from gateway.store.repository import StoredResource


def embed(
    ctx: RequestContext,
    row: StoredRow | StoredResource,
    *,
    summary: str | None = None,
    elements: tuple[str, ...] | None = None,
) -> Any:
    """The resource of a bundle entry: raw bytes when nothing changes it, else a dict.

    Returns None when the policy does not let the requester see it.
    """
    assert row.body is not None
    shown = ctx.policy.disclose(row.res_type, row.res_id, row.custodian, row.client, row.body)
    if shown is None:
        return None
    if not summary and not elements:
        return orjson.Fragment(shown) if isinstance(shown, bytes) else shown
    resource: dict[str, Any] = orjson.loads(shown) if isinstance(shown, bytes) else shown
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
