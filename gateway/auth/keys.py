"""The gateway's own token-signing keys.

A key is created in the database on first use (ES384 unless asked otherwise; RS384
is supported). ``rotate_signing_key`` retires the active key and creates a new one;
a retired key stays published and usable for verification for the longest access
token lifetime, so tokens it signed stay valid until they expire, and is deleted
after that. Key ids are RFC 7638 JWK thumbprints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import Connection, delete, insert, select, update

from gateway.auth.schema import auth_signing_key
from gateway.store.database import Database

SIGNING_ALGORITHMS = ("ES384", "RS384")
DEFAULT_ALGORITHM = "ES384"
MAX_ACCESS_TOKEN_LIFETIME = 15 * 60
RSA_KEY_BITS = 3072

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key_pem: str
    public_jwk: dict[str, Any]
    created_at: int
    retired_at: int | None

    def private_key(self) -> PrivateKey:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        return key

    def public_key(self) -> PublicKey:
        return self.private_key().public_key()

    def verifies_at(self, now: int) -> bool:
        """Active, or retired less than the longest token lifetime ago."""
        return self.retired_at is None or now < self.retired_at + MAX_ACCESS_TOKEN_LIFETIME


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members in lexicographic order."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def generate_signing_key(algorithm: str = DEFAULT_ALGORITHM, *, now: int) -> SigningKey:
    """A new key pair for ``algorithm`` (ES384 on P-384, RS384 on RSA-3072)."""
    private: PrivateKey
    if algorithm == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
        jwk: dict[str, Any] = dict(ECAlgorithm.to_jwk(private.public_key(), as_dict=True))
    elif algorithm == "RS384":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        jwk = dict(RSAAlgorithm.to_jwk(private.public_key(), as_dict=True))
    else:
        raise ValueError(f"unsupported signing algorithm {algorithm!r}; use one of ES384, RS384")
    kid = jwk_thumbprint(jwk)
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SigningKey(kid, algorithm, pem, jwk, now, None)


def _from_row(row: Any) -> SigningKey:
    return SigningKey(
        kid=row.kid,
        algorithm=row.algorithm,
        private_key_pem=row.private_key_pem,
        public_jwk=json.loads(row.public_jwk),
        created_at=row.created_at,
        retired_at=row.retired_at,
    )


def _insert(conn: Connection, key: SigningKey) -> None:
    conn.execute(
        insert(auth_signing_key).values(
            kid=key.kid,
            algorithm=key.algorithm,
            private_key_pem=key.private_key_pem,
            public_jwk=json.dumps(key.public_jwk),
            created_at=key.created_at,
            retired_at=None,
        )
    )


def _newest_active(conn: Connection) -> SigningKey | None:
    row = conn.execute(
        select(auth_signing_key)
        .where(auth_signing_key.c.retired_at.is_(None))
        .order_by(auth_signing_key.c.created_at.desc(), auth_signing_key.c.kid)
        .limit(1)
    ).first()
    return None if row is None else _from_row(row)


def active_signing_key(db: Database, *, now: int | None = None) -> SigningKey:
    """The key new tokens are signed with, created (ES384) if there is none yet."""
    with db.read() as conn:
        key = _newest_active(conn)
    if key is not None:
        return key
    with db.write() as conn:
        key = _newest_active(conn)
        if key is None:
            key = generate_signing_key(now=int(time.time()) if now is None else now)
            _insert(conn, key)
        return key


def rotate_signing_key(
    db: Database, *, algorithm: str = DEFAULT_ALGORITHM, now: int | None = None
) -> SigningKey:
    """Retires the active key(s), creates a new active one and deletes keys retired
    longer ago than the longest token lifetime."""
    now = int(time.time()) if now is None else now
    key = generate_signing_key(algorithm, now=now)
    with db.write() as conn:
        conn.execute(
            delete(auth_signing_key).where(
                auth_signing_key.c.retired_at < now - MAX_ACCESS_TOKEN_LIFETIME
            )
        )
        conn.execute(
            update(auth_signing_key)
            .where(auth_signing_key.c.retired_at.is_(None))
            .values(retired_at=now)
        )
        _insert(conn, key)
    return key


def verification_key(db: Database, kid: str, *, now: int) -> SigningKey | None:
    """The key with ``kid`` if tokens it signed may still be accepted at ``now``."""
    with db.read() as conn:
        row = conn.execute(select(auth_signing_key).where(auth_signing_key.c.kid == kid)).first()
    if row is None:
        return None
    key = _from_row(row)
    return key if key.verifies_at(now) else None


def signing_keys(db: Database) -> list[SigningKey]:
    """Every stored key, newest first."""
    with db.read() as conn:
        rows = conn.execute(
            select(auth_signing_key).order_by(
                auth_signing_key.c.created_at.desc(), auth_signing_key.c.kid
            )
        ).all()
    return [_from_row(row) for row in rows]


def public_jwks(db: Database, *, now: int | None = None) -> dict[str, Any]:
    """The JWK Set (RFC 7517 §5) of every key tokens may still be verified with."""
    now = int(time.time()) if now is None else now
    active_signing_key(db, now=now)
    return {"keys": [k.public_jwk for k in signing_keys(db) if k.verifies_at(now)]}
