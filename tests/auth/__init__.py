"""Helpers for the authorization tests: client key pairs and client assertions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import delete

from gateway.auth.schema import metadata
from gateway.store.database import Database

TOKEN_URL = "http://testserver/auth/token"
FHIR_BASE = "http://testserver/fhir"
ISSUER = "http://testserver/auth"
NOW = 1_800_000_000


def clear_auth_tables(db: Database) -> None:
    """Empties the auth tables (the shared PostgreSQL test database keeps them)."""
    with db.write() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))


@dataclass(frozen=True)
class ClientKey:
    kid: str
    algorithm: str
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk = dict(ECAlgorithm.to_jwk(public, as_dict=True))
        else:
            jwk = dict(RSAAlgorithm.to_jwk(public, as_dict=True))
        jwk.update({"kid": self.kid, "alg": self.algorithm})
        return jwk

    def private_jwk(self) -> dict[str, Any]:
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            jwk = dict(ECAlgorithm.to_jwk(self.private_key, as_dict=True))
        else:
            jwk = dict(RSAAlgorithm.to_jwk(self.private_key, as_dict=True))
        jwk["kid"] = self.kid
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}


def make_key(algorithm: str = "ES384", kid: str | None = None) -> ClientKey:
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm.startswith("ES"):
        private = ec.generate_private_key(ec.SECP384R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ClientKey(kid or uuid.uuid4().hex[:12], algorithm, private)


def make_assertion(
    key: ClientKey,
    client_id: str,
    *,
    now: int = NOW,
    aud: str = TOKEN_URL,
    lifetime: int = 240,
    omit: tuple[str, ...] = (),
    **overrides: Any,
) -> str:
    """A client assertion per SMART backend services; ``overrides`` replace claims."""
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    for name in omit:
        claims.pop(name, None)
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})
