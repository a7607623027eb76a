"""HTTP endpoints of the authorization server: ``POST /auth/token``,
``GET /auth/jwks`` and the SMART configuration document served at
``/fhir/.well-known/smart-configuration`` (SMART App Launch "Conformance":
https://hl7.org/fhir/smart-app-launch/conformance.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.auth.keys import public_jwks
from gateway.auth.scopes import ADMIN_SCOPE
from gateway.auth.tokens import ASSERTION_ALGORITHMS, OAuthError, exchange_client_assertion
from gateway.config import Settings
from gateway.store.database import Database

AUTH_PATH = "/auth"
FHIR_PATH = "/fhir"
MAX_FORM_BYTES = 64 * 1024
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
TOKEN_FIELDS = ("grant_type", "client_assertion_type", "client_assertion", "scope")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
SCOPES_SUPPORTED = ("system/*.cruds", "system/*.rs", "system/*.read", "system/*.write", ADMIN_SCOPE)


@dataclass(frozen=True, slots=True)
class AuthUrls:
    """The absolute URLs clients see, from ``public_base_url`` or the request."""

    root: str
    fhir_base: str

    @property
    def issuer(self) -> str:
        return f"{self.root}{AUTH_PATH}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.root}{AUTH_PATH}/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.root}{AUTH_PATH}/jwks"


def auth_urls(request: Request) -> AuthUrls:
    """The gateway's URLs: the FHIR base is ``settings.public_base_url`` (or the
    request base + ``/fhir``), the auth endpoints sit beside it under ``/auth``."""
    settings: Settings = request.app.state.settings
    if settings.public_base_url:
        fhir_base = settings.public_base_url.rstrip("/")
        root = fhir_base.removesuffix(FHIR_PATH)
    else:
        root = str(request.base_url).rstrip("/")
        fhir_base = f"{root}{FHIR_PATH}"
    return AuthUrls(root=root, fhir_base=fhir_base)


def _oauth_error(error: OAuthError) -> JSONResponse:
    return JSONResponse(error.to_json(), status_code=error.status, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    """An RFC 6749 §3.2 request body: form-encoded, each parameter at most once."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise OAuthError("invalid_request", f"the token request must be {FORM_MEDIA_TYPE}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "the token request is too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise OAuthError("invalid_request", "the token request is not UTF-8") from exc
    form: dict[str, str] = {}
    for name, values in fields.items():
        if len(values) > 1:
            raise OAuthError("invalid_request", f"parameter {name!r} appears more than once")
        form[name] = values[0]
    return form


async def token(request: Request) -> Response:
    """``POST /auth/token`` (SMART backend services, "Obtaining an access token")."""
    try:
        form = await _form(request)
        urls = auth_urls(request)
        database: Database = request.app.state.database
        result = await run_in_threadpool(
            lambda: exchange_client_assertion(
                database,
                grant_type=form.get("grant_type"),
                client_assertion_type=form.get("client_assertion_type"),
                client_assertion=form.get("client_assertion"),
                scope=form.get("scope"),
                token_endpoint_url=urls.token_endpoint,
                fhir_base_url=urls.fhir_base,
                issuer=urls.issuer,
            )
        )
    except OAuthError as error:
        return _oauth_error(error)
    return JSONResponse(result.to_json(), headers=NO_STORE)


async def jwks(request: Request) -> Response:
    """``GET /auth/jwks``: the public keys of the gateway's access tokens."""
    database: Database = request.app.state.database
    document = await run_in_threadpool(public_jwks, database)
    return JSONResponse(
        document,
        media_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=60"},
    )


async def smart_configuration(request: Request) -> Response:
    """``GET /fhir/.well-known/smart-configuration`` (SMART App Launch, "Metadata")."""
    urls = auth_urls(request)
    document: dict[str, Any] = {
        "issuer": urls.issuer,
        "jwks_uri": urls.jwks_uri,
        "token_endpoint": urls.token_endpoint,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
    }
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})


def auth_routes() -> list[BaseRoute]:
    """The routes to mount under ``/auth``."""
    return [
        Route("/token", token, methods=["POST"]),
        Route("/jwks", jwks, methods=["GET"]),
    ]
