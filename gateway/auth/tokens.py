"""The token exchange of SMART Backend Services and the verification of the access
tokens it issues.

- Client authentication: a JWT client assertion (RFC 7523 §2.2, §3) signed with
  one of the client's registered keys ("private_key_jwt"), SMART backend services
  "Protocol details": https://hl7.org/fhir/smart-app-launch/backend-services.html
- Errors of the token endpoint: RFC 6749 §5.2; every invalid assertion is
  ``invalid_client`` (RFC 7523 §3.2).
- Access tokens: JWTs signed with the gateway's key (``gateway.auth.keys``), for
  the FHIR base URL as audience; a rejected token is a 401 with a Bearer challenge
  (RFC 6750 §3).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import jwt
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from gateway.auth.clients import Client, get_client
from gateway.auth.keys import MAX_ACCESS_TOKEN_LIFETIME, active_signing_key, verification_key
from gateway.auth.schema import auth_jti
from gateway.auth.scopes import ADMIN_SCOPE, grant_scopes, permits, split_scopes
from gateway.errors import Forbidden, Unauthorized
from gateway.store.database import Database

CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 5 * 60
ACCESS_TOKEN_LIFETIME = 5 * 60
CLOCK_SKEW = 30
MAX_JTI_LENGTH = 255


@dataclass
class OAuthError(Exception):
    """A token-endpoint error response (RFC 6749 §5.2)."""

    error: str
    description: str

    def __post_init__(self) -> None:
        Exception.__init__(self, f"{self.error}: {self.description}")

    @property
    def status(self) -> int:
        return 401 if self.error == "invalid_client" else 400

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful access-token response (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "bearer"

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, from a verified access token."""

    client_id: str
    organization_id: str
    scopes: tuple[str, ...]
    is_admin: bool
    default_purpose: str | None
    token_id: str = ""
    expires_at: int = 0

    def permits(self, resource_type: str, interaction: str) -> bool:
        return permits(self.scopes, resource_type, interaction)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def bearer_challenge(error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 §3); no error code when no token was sent."""
    parts = ['Bearer realm="silta"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{_quote(description)}"')
    return ", ".join(parts)


class InvalidToken(Unauthorized):
    """401: the access token is missing, malformed, expired, forged or not for us
    (RFC 6750 §3.1 ``invalid_token``)."""

    error: ClassVar[str | None] = "invalid_token"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.headers.setdefault(
            "WWW-Authenticate",
            bearer_challenge(self.error, self.diagnostics if self.error else None),
        )


class MissingToken(InvalidToken):
    """401 for a request without credentials: a challenge without error code."""

    error = None


class InsufficientScope(Forbidden):
    """403: the token's scopes do not allow the request (RFC 6750 §3.1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.headers.setdefault(
            "WWW-Authenticate", bearer_challenge("insufficient_scope", self.diagnostics)
        )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else now


def _authenticate(
    db: Database, assertion: str, *, token_endpoint_url: str, now: int
) -> tuple[Client, str, int]:
    """Verifies a client assertion (RFC 7523 §3, SMART backend services
    "Authenticating to the token endpoint"); returns the client, jti and exp."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _invalid_client(f"the client assertion is not a valid JWT: {exc}") from exc
    algorithm = header.get("alg")
    if algorithm not in ASSERTION_ALGORITHMS:
        raise _invalid_client(
            f"client assertion alg {algorithm!r} is not accepted; use RS384 or ES384"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid_client('the client assertion header has no "kid"')
    issuer, subject = unverified.get("iss"), unverified.get("sub")
    if not isinstance(issuer, str) or not issuer:
        raise _invalid_client('the client assertion has no "iss"')
    if subject != issuer:
        raise _invalid_client('"iss" and "sub" of the client assertion must both be the client_id')
    client = get_client(db, issuer)
    if client is None:
        raise _invalid_client(f"unknown client {issuer!r}")
    if not client.is_active:
        raise _invalid_client(f"client {issuer!r} is disabled")
    jwk = client.key(kid)
    if jwk is None:
        raise _invalid_client(f"client {issuer!r} has no registered key {kid!r}")
    if jwk.get("alg", algorithm) != algorithm:
        raise _invalid_client(f"key {kid!r} is registered for alg {jwk['alg']!r}, not {algorithm}")
    try:
        key = jwt.PyJWK(jwk, algorithm=algorithm)
        claims = jwt.decode(
            assertion,
            key.key,
            algorithms=[algorithm],
            audience=token_endpoint_url,
            issuer=client.client_id,
            options={
                "require": ["iss", "sub", "aud", "exp", "jti"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise _invalid_client(
            f'the client assertion "aud" must be the token endpoint {token_endpoint_url}'
        ) from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid_client(f'the client assertion has no "{exc.claim}"') from exc
    except jwt.PyJWTError as exc:
        raise _invalid_client(f"the client assertion does not verify: {exc}") from exc
    exp = claims["exp"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _invalid_client('"exp" of the client assertion must be a number')
    if exp <= now - CLOCK_SKEW:
        raise _invalid_client("the client assertion has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise _invalid_client(
            f'"exp" of the client assertion may be at most {MAX_ASSERTION_LIFETIME} s ahead'
        )
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW:
        raise _invalid_client("the client assertion is not yet valid (nbf)")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise _invalid_client(f'"jti" must be a string of 1-{MAX_JTI_LENGTH} characters')
    return client, jti, int(exp)


def _record_jti(db: Database, *, client_id: str, jti: str, exp: int, now: int) -> None:
    """Remembers a used assertion id until the assertion expires (RFC 7523 §3 item 7);
    expired entries are purged on the way."""
    try:
        with db.write() as conn:
            conn.execute(delete(auth_jti).where(auth_jti.c.expires_at < now))
            conn.execute(
                insert(auth_jti).values(client_id=client_id, jti=jti, expires_at=exp + CLOCK_SKEW)
            )
    except IntegrityError as exc:
        raise _invalid_client("the client assertion was already used (jti replay)") from exc


def exchange_client_assertion(
    db: Database,
    *,
    grant_type: str | None,
    client_assertion_type: str | None,
    client_assertion: str | None,
    scope: str | None,
    token_endpoint_url: str,
    fhir_base_url: str,
    issuer: str,
    now: int | None = None,
    lifetime: int = ACCESS_TOKEN_LIFETIME,
) -> TokenResponse:
    """Exchanges a client assertion for an access token (SMART backend services
    "Obtaining an access token"; RFC 6749 §4.4 with RFC 7523 §2.2 client
    authentication). Raises OAuthError."""
    now = _now(now)
    if not 0 < lifetime <= MAX_ACCESS_TOKEN_LIFETIME:
        raise ValueError(f"access token lifetime must be 1-{MAX_ACCESS_TOKEN_LIFETIME} s")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant_type != CLIENT_CREDENTIALS:
        raise OAuthError(
            "unsupported_grant_type", f"grant_type must be {CLIENT_CREDENTIALS}, not {grant_type!r}"
        )
    if client_assertion_type != JWT_BEARER_ASSERTION:
        raise OAuthError("invalid_request", f"client_assertion_type must be {JWT_BEARER_ASSERTION}")
    if not client_assertion:
        raise OAuthError("invalid_request", "client_assertion is required")
    client, jti, exp = _authenticate(
        db, client_assertion, token_endpoint_url=token_endpoint_url, now=now
    )
    _record_jti(db, client_id=client.client_id, jti=jti, exp=exp, now=now)
    if not scope or not scope.split():
        raise OAuthError("invalid_scope", "scope is required")
    granted = grant_scopes(scope, client.scopes)
    if not granted:
        raise OAuthError(
            "invalid_scope",
            f"none of the requested scopes is registered for client {client.client_id!r}",
        )
    key = active_signing_key(db, now=now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": client.client_id,
        "client_id": client.client_id,
        "organization": client.organization_id,
        "scope": " ".join(granted),
        "aud": fhir_base_url,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    if client.default_purpose:
        claims["purpose"] = client.default_purpose
    token = jwt.encode(claims, key.private_key(), algorithm=key.algorithm, headers={"kid": key.kid})
    return TokenResponse(access_token=token, expires_in=lifetime, scope=claims["scope"])


def verify_access_token(
    db: Database,
    token: str | None,
    *,
    audience: str,
    issuer: str | None = None,
    now: int | None = None,
) -> Principal:
    """Verifies an access token this gateway issued (signature with a known
    gateway key, alg, audience, expiry, issuer when given) and that its client is
    still active. Raises MissingToken or InvalidToken (RFC 6750 §3.1)."""
    now = _now(now)
    if not token:
        raise MissingToken("an access token is required")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("the access token is not a valid JWT") from exc
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken('the access token has no "kid"')
    key = verification_key(db, kid, now=now)
    if key is None:
        raise InvalidToken("the access token was signed with an unknown key")
    if header.get("alg") != key.algorithm:
        raise InvalidToken("the access token has the wrong alg")
    try:
        claims = jwt.decode(
            token,
            key.public_key(),
            algorithms=[key.algorithm],
            audience=audience,
            issuer=issuer,
            options={
                "require": ["iss", "sub", "aud", "exp", "iat", "jti", "scope"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_iss": issuer is not None,
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken("the access token is not for this server (aud)") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidToken("the access token has the wrong issuer") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("the access token does not verify") from exc
    exp = claims["exp"]
    if not isinstance(exp, int) or exp <= now:
        raise InvalidToken("the access token has expired")
    client_id = claims["sub"]
    client = get_client(db, client_id) if isinstance(client_id, str) else None
    if client is None or not client.is_active:
        raise InvalidToken("the access token's client is unknown or disabled")
    scopes = tuple(split_scopes(str(claims["scope"])))
    purpose = claims.get("purpose")
    return Principal(
        client_id=client.client_id,
        organization_id=str(claims.get("organization", client.organization_id)),
        scopes=scopes,
        is_admin=client.is_admin and ADMIN_SCOPE in scopes,
        default_purpose=purpose if isinstance(purpose, str) else None,
        token_id=str(claims["jti"]),
        expires_at=exp,
    )


class VerifiedTokens:
    """Access tokens already verified, kept until they expire or for ``recheck_seconds``
    (after which the signature and the client's status are checked again), so a client
    that reuses its token pays for the signature check once, not on every request."""

    def __init__(
        self, db: Database, *, recheck_seconds: int = 30, max_entries: int = 10_000
    ) -> None:
        self.db = db
        self.recheck_seconds = recheck_seconds
        self.max_entries = max_entries
        self._verified: dict[tuple[str, str], tuple[Principal, float]] = {}

    def principal(self, token: str | None, *, audience: str) -> Principal:
        now = time.time()
        if token:
            hit = self._verified.get((token, audience))
            if hit is not None and hit[1] > now:
                return hit[0]
        principal = verify_access_token(self.db, token, audience=audience, now=int(now))
        assert token is not None
        if len(self._verified) >= self.max_entries:
            self._verified.clear()
        self._verified[(token, audience)] = (
            principal,
            min(float(principal.expires_at), now + self.recheck_seconds),
        )
        return principal
