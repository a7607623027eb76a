"""Registered backend-service clients (SMART backend services, "Registering a
SMART Backend Service"): each has a client_id, the organisation it acts for, a JWK
Set of its public keys, the scopes it may be granted and a status.

Errors are the gateway's typed errors (``gateway.errors``): a bad registration is a
BadRequest, an unknown client NotFound, a duplicate client_id Conflict.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.auth.schema import auth_client
from gateway.auth.scopes import ADMIN_SCOPE, ScopeError, validate_registered_scopes
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.store.database import Database

ACTIVE = "active"
DISABLED = "disabled"
STATUSES = (ACTIVE, DISABLED)
KEY_TYPES = ("RSA", "EC")
EC_CURVES = ("P-256", "P-384", "P-521")
CLIENT_ALGORITHMS = ("RS384", "ES384")
# RFC 7518 §6.2.2 (EC), §6.3.2 (RSA) and §6.4 (symmetric): private key members.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MAX_ID_LENGTH = 128


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    organization_id: str
    jwks: dict[str, Any]
    scopes: tuple[str, ...]
    is_admin: bool
    default_purpose: str | None
    status: str
    created_at: int

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    def key(self, kid: str) -> dict[str, Any] | None:
        """The client's public JWK with ``kid``."""
        return next((k for k in self.jwks["keys"] if k.get("kid") == kid), None)


def validate_jwks(jwks: str | dict[str, Any]) -> dict[str, Any]:
    """Checks a client's JWK Set (RFC 7517 §5): an object with ``keys``, each with a
    unique ``kid``, ``kty`` RSA or EC and public members only. Raises BadRequest."""
    if isinstance(jwks, str):
        try:
            jwks = json.loads(jwks)
        except ValueError as exc:
            raise BadRequest(f"the JWK Set is not valid JSON: {exc}") from exc
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise BadRequest('a JWK Set must be a JSON object with a non-empty "keys" array')
    seen: set[str] = set()
    for index, key in enumerate(jwks["keys"]):
        where = f"JWK #{index}"
        if not isinstance(key, dict):
            raise BadRequest(f"{where} is not a JSON object")
        kid = key.get("kid")
        if not isinstance(kid, str) or not kid:
            raise BadRequest(f'{where} has no "kid"')
        where = f"JWK {kid!r}"
        if kid in seen:
            raise BadRequest(f"{where} appears twice")
        seen.add(kid)
        private = [m for m in PRIVATE_MEMBERS if m in key]
        if private:
            raise BadRequest(
                f"{where} contains private key material ({', '.join(private)}); "
                "register the public key only"
            )
        kty = key.get("kty")
        if kty not in KEY_TYPES:
            raise BadRequest(f'{where} has "kty" {kty!r}; only RSA and EC keys are accepted')
        if kty == "EC" and key.get("crv") not in EC_CURVES:
            raise BadRequest(f"{where} has an unsupported curve {key.get('crv')!r}")
        if "alg" in key and key["alg"] not in CLIENT_ALGORITHMS:
            raise BadRequest(f'{where} has "alg" {key["alg"]!r}; use RS384 or ES384')
        if key.get("use", "sig") != "sig":
            raise BadRequest(f'{where} has "use" {key["use"]!r}; a signing key must be "sig"')
        try:
            jwt.PyJWK(key)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise BadRequest(f"{where} is not a valid public key: {exc}") from exc
    return jwks


def _check_id(name: str, value: str) -> None:
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable() or " " in value:
        raise BadRequest(f"{name} must be 1-{MAX_ID_LENGTH} printable characters without spaces")


def _scopes(scopes: str | Iterable[str], *, is_admin: bool) -> list[str]:
    try:
        result = validate_registered_scopes(scopes)
    except ScopeError as exc:
        raise BadRequest(str(exc)) from exc
    if ADMIN_SCOPE in result and not is_admin:
        raise BadRequest(f"the {ADMIN_SCOPE!r} scope is only for admin clients")
    if is_admin and ADMIN_SCOPE not in result:
        result.append(ADMIN_SCOPE)
    if not result:
        raise BadRequest("a client needs at least one scope")
    return result


def _from_row(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        organization_id=row.organization_id,
        jwks=json.loads(row.jwks),
        scopes=tuple(row.scopes.split()),
        is_admin=bool(row.is_admin),
        default_purpose=row.default_purpose,
        status=row.status,
        created_at=row.created_at,
    )


def _get(conn: Connection, client_id: str) -> Client | None:
    row = conn.execute(select(auth_client).where(auth_client.c.client_id == client_id)).first()
    return None if row is None else _from_row(row)


def register_client(
    db: Database,
    *,
    client_id: str,
    organization_id: str,
    jwks: str | dict[str, Any],
    scopes: str | Iterable[str],
    is_admin: bool = False,
    default_purpose: str | None = None,
    now: int | None = None,
) -> Client:
    """Registers an active client; an admin client always holds the ``admin`` scope."""
    _check_id("client_id", client_id)
    _check_id("organization_id", organization_id)
    client = Client(
        client_id=client_id,
        organization_id=organization_id,
        jwks=validate_jwks(jwks),
        scopes=tuple(_scopes(scopes, is_admin=is_admin)),
        is_admin=is_admin,
        default_purpose=default_purpose or None,
        status=ACTIVE,
        created_at=int(time.time()) if now is None else now,
    )
    try:
        with db.write() as conn:
            if _get(conn, client_id) is not None:
                raise Conflict(f"client {client_id!r} is already registered")
            conn.execute(
                insert(auth_client).values(
                    client_id=client.client_id,
                    organization_id=client.organization_id,
                    jwks=json.dumps(client.jwks),
                    scopes=" ".join(client.scopes),
                    is_admin=client.is_admin,
                    default_purpose=client.default_purpose,
                    status=client.status,
                    created_at=client.created_at,
                )
            )
    except IntegrityError as exc:
        raise Conflict(f"client {client_id!r} is already registered") from exc
    return client


def update_client(
    db: Database,
    client_id: str,
    *,
    organization_id: str | None = None,
    jwks: str | dict[str, Any] | None = None,
    scopes: str | Iterable[str] | None = None,
    is_admin: bool | None = None,
    default_purpose: str | _Unset | None = UNSET,
    status: str | None = None,
) -> Client:
    """Changes the given fields of a client (``default_purpose=None`` clears it)."""
    with db.write() as conn:
        current = _get(conn, client_id)
        if current is None:
            raise NotFound(f"no client {client_id!r}")
        values: dict[str, Any] = {}
        if organization_id is not None:
            _check_id("organization_id", organization_id)
            values["organization_id"] = organization_id
        if jwks is not None:
            values["jwks"] = json.dumps(validate_jwks(jwks))
        admin = current.is_admin if is_admin is None else is_admin
        if scopes is not None or is_admin is not None:
            base = current.scopes if scopes is None else scopes
            if scopes is None and not admin:
                base = [s for s in current.scopes if s != ADMIN_SCOPE]
            values["scopes"] = " ".join(_scopes(base, is_admin=admin))
            values["is_admin"] = admin
        if not isinstance(default_purpose, _Unset):
            values["default_purpose"] = default_purpose or None
        if status is not None:
            if status not in STATUSES:
                raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
            values["status"] = status
        if values:
            conn.execute(
                update(auth_client).where(auth_client.c.client_id == client_id).values(**values)
            )
        updated = _get(conn, client_id)
    assert updated is not None
    return updated


def disable_client(db: Database, client_id: str) -> Client:
    """Disables a client: it gets no new tokens and its tokens stop being accepted."""
    return update_client(db, client_id, status=DISABLED)


def get_client(db: Database, client_id: str) -> Client | None:
    with db.read() as conn:
        return _get(conn, client_id)


def list_clients(db: Database) -> list[Client]:
    with db.read() as conn:
        rows = conn.execute(select(auth_client).order_by(auth_client.c.client_id)).all()
    return [_from_row(row) for row in rows]
