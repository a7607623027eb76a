"""Client registration (JWKS validation) and the gateway's signing keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.auth.clients import (
    disable_client,
    get_client,
    list_clients,
    register_client,
    update_client,
    validate_jwks,
)
from gateway.auth.keys import (
    MAX_ACCESS_TOKEN_LIFETIME,
    active_signing_key,
    public_jwks,
    rotate_signing_key,
    signing_keys,
)
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.store.database import Database
from tests.auth import NOW, clear_auth_tables, make_key


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    clear_auth_tables(database)
    yield database


def test_register_get_update_disable(db: Database) -> None:
    key = make_key("ES384")
    client = register_client(
        db,
        client_id="kela-etuus",
        organization_id="kela",
        jwks=json.dumps(key.jwks()),
        scopes="system/ServiceRequest.crus system/Task.cruds",
        default_purpose="TREAT",
        now=NOW,
    )
    assert client.is_active and not client.is_admin
    assert get_client(db, "kela-etuus") == client
    assert client.key(key.kid) == key.public_jwk()
    with pytest.raises(Conflict):
        register_client(
            db,
            client_id="kela-etuus",
            organization_id="kela",
            jwks=key.jwks(),
            scopes="system/*.rs",
        )
    updated = update_client(db, "kela-etuus", scopes="system/*.rs", default_purpose=None)
    assert updated.scopes == ("system/*.rs",)
    assert updated.default_purpose is None
    assert disable_client(db, "kela-etuus").status == "disabled"
    assert [c.client_id for c in list_clients(db)] == ["kela-etuus"]
    with pytest.raises(NotFound):
        disable_client(db, "nobody")
    assert get_client(db, "nobody") is None


def test_admin_scope_belongs_to_admin_clients(db: Database) -> None:
    jwks = make_key().jwks()
    admin = register_client(
        db, client_id="ops", organization_id="silta", jwks=jwks, scopes="system/*.rs", is_admin=True
    )
    assert admin.scopes == ("system/*.rs", "admin")
    with pytest.raises(BadRequest, match="only for admin clients"):
        register_client(db, client_id="x", organization_id="o", jwks=jwks, scopes="admin")
    assert update_client(db, "ops", is_admin=False).scopes == ("system/*.rs",)


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        ("patient/*.rs", "not a SMART system scope"),
        ("system/Patient.r?identifier=x", "query-restricted"),
        ("", "at least one scope"),
    ],
)
def test_bad_registered_scopes(db: Database, scopes: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        register_client(
            db, client_id="c", organization_id="o", jwks=make_key().jwks(), scopes=scopes
        )


def _jwks_cases() -> list[tuple[Any, str]]:
    ec_key = make_key("ES384", kid="ec1")
    rsa_key = make_key("RS384", kid="rsa1")
    public = ec_key.public_jwk()
    return [
        ({"keys": [ec_key.private_jwk()]}, "private key material"),
        ({"keys": [rsa_key.private_jwk()]}, "private key material"),
        ("not json", "not valid JSON"),
        ([public], "JSON object"),
        ({"keys": []}, "non-empty"),
        ({"keys": ["x"]}, "not a JSON object"),
        ({"keys": [{k: v for k, v in public.items() if k != "kid"}]}, '"kid"'),
        ({"keys": [public, public]}, "twice"),
        ({"keys": [{**public, "kty": "oct"}]}, "only RSA and EC"),
        ({"keys": [{**public, "crv": "secp256k1"}]}, "unsupported curve"),
        ({"keys": [{**public, "alg": "HS256"}]}, "RS384 or ES384"),
        ({"keys": [{**public, "use": "enc"}]}, '"sig"'),
        ({"keys": [{**public, "x": "AAAA"}]}, "not a valid public key"),
    ]


@pytest.mark.parametrize(("jwks", "message"), _jwks_cases())
def test_bad_jwks_rejected(jwks: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        validate_jwks(jwks)


def test_valid_jwks_with_rsa_and_ec_keys() -> None:
    jwks = {"keys": [make_key("ES384").public_jwk(), make_key("RS384").public_jwk()]}
    assert validate_jwks(json.dumps(jwks)) == jwks


def test_signing_key_is_created_on_first_use(db: Database) -> None:
    assert signing_keys(db) == []
    key = active_signing_key(db, now=NOW)
    assert key.algorithm == "ES384"
    assert active_signing_key(db, now=NOW + 10) == key
    jwks = public_jwks(db, now=NOW)
    assert jwks == {"keys": [key.public_jwk]}
    assert "d" not in key.public_jwk and key.public_jwk["kid"] == key.kid


def test_rotation_keeps_old_keys_until_their_tokens_expire(db: Database) -> None:
    old = active_signing_key(db, now=NOW)
    new = rotate_signing_key(db, algorithm="RS384", now=NOW + 60)
    assert new.algorithm == "RS384" and new.kid != old.kid
    assert active_signing_key(db, now=NOW + 61) == new
    kids = {k["kid"] for k in public_jwks(db, now=NOW + 61)["keys"]}
    assert kids == {old.kid, new.kid}
    later = NOW + 60 + MAX_ACCESS_TOKEN_LIFETIME
    assert {k["kid"] for k in public_jwks(db, now=later)["keys"]} == {new.kid}
    newest = rotate_signing_key(db, now=later + 1)
    assert {k.kid for k in signing_keys(db)} == {new.kid, newest.kid}
    with pytest.raises(ValueError):
        rotate_signing_key(db, algorithm="HS256")
