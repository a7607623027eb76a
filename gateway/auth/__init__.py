"""SMART Backend Services authorization: OAuth 2.0 client credentials with a
private_key_jwt client assertion (RFC 7523), SMART scopes and the gateway's own
token-signing keys (https://hl7.org/fhir/smart-app-launch/backend-services.html)."""

from __future__ import annotations

from gateway.auth.clients import (
    Client,
    disable_client,
    get_client,
    list_clients,
    register_client,
    update_client,
    validate_jwks,
)
from gateway.auth.keys import active_signing_key, public_jwks, rotate_signing_key
from gateway.auth.scopes import ADMIN_SCOPE, grant_scopes, parse_scope, permits
from gateway.auth.tokens import (
    InsufficientScope,
    InvalidToken,
    OAuthError,
    Principal,
    TokenResponse,
    bearer_token,
    exchange_client_assertion,
    verify_access_token,
)

__all__ = [
    "ADMIN_SCOPE",
    "Client",
    "InsufficientScope",
    "InvalidToken",
    "OAuthError",
    "Principal",
    "TokenResponse",
    "active_signing_key",
    "bearer_token",
    "disable_client",
    "exchange_client_assertion",
    "get_client",
    "grant_scopes",
    "list_clients",
    "parse_scope",
    "permits",
    "public_jwks",
    "register_client",
    "rotate_signing_key",
    "update_client",
    "validate_jwks",
    "verify_access_token",
]
