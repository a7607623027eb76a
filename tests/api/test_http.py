"""HTTP helpers of the FHIR API: the request target read from the ASGI scope."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.api.http import request_path, request_query


@pytest.mark.parametrize(
    ("path", "query_string"),
    [
        ("/fhir/Patient", b"identifier=urn%3Aoid%3A1.2.246.21%7C010280-952L&_count=5"),
        ("/fhir/Patient/a b?#\\x", b""),
        ("/fhir/Patient", "name=Äijälä".encode()),
        ("/fhir/Ä/_history", b"_since=2025-01-01T00:00:00Z"),
    ],
)
def test_the_request_target_is_what_starlette_s_url_gives(path: str, query_string: bytes) -> None:
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "server": ("127.0.0.1", 8080),
            "root_path": "",
            "path": path,
            "query_string": query_string,
            "headers": [(b"host", b"gateway.example:8080")],
        }
    )
    assert request_path(request) == request.url.path
    assert request_query(request) == request.url.query


def test_a_query_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    request = Request(
        {"type": "http", "path": "/fhir/Patient", "query_string": b"name=\xc4ij", "headers": []}
    )
    assert request_query(request) == "name=\ufffdij"
