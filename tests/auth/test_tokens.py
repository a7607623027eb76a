"""Token exchange (SMART backend services, RFC 7523 §3) and access-token checks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import orjson
import pytest

from gateway.auth.clients import disable_client, register_client
from gateway.auth.keys import MAX_ACCESS_TOKEN_LIFETIME, active_signing_key, rotate_signing_key
from gateway.auth.tokens import (
    JWT_BEARER_ASSERTION,
    InvalidToken,
    MissingToken,
    OAuthError,
    TokenResponse,
    bearer_token,
    exchange_client_assertion,
    verify_access_token,
)
from gateway.store.database import Database
from tests.auth import (
    FHIR_BASE,
    ISSUER,
    NOW,
    TOKEN_URL,
    ClientKey,
    clear_auth_tables,
    make_assertion,
    make_key,
)

CLIENT_ID = "hva-pirkanmaa-sos"
SCOPES = "system/ServiceRequest.crus system/Task.cruds system/Patient.rs"


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    clear_auth_tables(database)
    yield database


@pytest.fixture(scope="module")
def es_key() -> ClientKey:
    return make_key("ES384", kid="es-1")


@pytest.fixture(scope="module")
def rs_key() -> ClientKey:
    return make_key("RS384", kid="rs-1")


@pytest.fixture
def client_db(db: Database, es_key: ClientKey, rs_key: ClientKey) -> Database:
    register_client(
        db,
        client_id=CLIENT_ID,
        organization_id="pirkanmaan-hva",
        jwks={"keys": [es_key.public_jwk(), rs_key.public_jwk()]},
        scopes=SCOPES,
        default_purpose="TREAT",
    )
    return db


def exchange(
    db: Database,
    assertion: str,
    *,
    scope: str | None = "system/Task.rs",
    now: int = NOW,
    **fields: Any,
) -> TokenResponse:
    form: dict[str, Any] = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER_ASSERTION,
        "client_assertion": assertion,
        "scope": scope,
    }
    form.update(fields)
    return exchange_client_assertion(
        db,
        **form,
        token_endpoint_url=TOKEN_URL,
        fhir_base_url=FHIR_BASE,
        issuer=ISSUER,
        now=now,
    )


def rejected(db: Database, assertion: str, **fields: Any) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        exchange(db, assertion, **fields)
    return info.value


@pytest.mark.parametrize("key_name", ["es_key", "rs_key"])
def test_good_exchange(client_db: Database, key_name: str, request: pytest.FixtureRequest) -> None:
    key: ClientKey = request.getfixturevalue(key_name)
    result = exchange(client_db, make_assertion(key, CLIENT_ID), scope="system/Task.rs")
    assert result.token_type == "bearer"
    assert result.expires_in == 300
    assert result.scope == "system/Task.rs"
    header = jwt.get_unverified_header(result.access_token)
    assert header["kid"] == active_signing_key(client_db).kid
    assert header["alg"] == "ES384"
    claims = jwt.decode(result.access_token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["aud"] == FHIR_BASE
    assert claims["sub"] == claims["client_id"] == CLIENT_ID
    assert claims["organization"] == "pirkanmaan-hva"
    assert claims["exp"] - claims["iat"] == 300
    principal = verify_access_token(client_db, result.access_token, audience=FHIR_BASE, now=NOW)
    assert principal.client_id == CLIENT_ID
    assert principal.organization_id == "pirkanmaan-hva"
    assert principal.scopes == ("system/Task.rs",)
    assert principal.default_purpose == "TREAT"
    assert not principal.is_admin
    assert principal.permits("Task", "search") and not principal.permits("Task", "update")


def test_scope_intersection(client_db: Database, es_key: ClientKey) -> None:
    result = exchange(
        client_db,
        make_assertion(es_key, CLIENT_ID),
        scope="system/*.cruds system/Consent.rs admin",
    )
    assert result.scope.split() == [
        "system/Patient.rs",
        "system/ServiceRequest.crus",
        "system/Task.cruds",
    ]
    error = rejected(client_db, make_assertion(es_key, CLIENT_ID), scope="system/Consent.rs admin")
    assert (error.error, error.status) == ("invalid_scope", 400)
    error = rejected(client_db, make_assertion(es_key, CLIENT_ID), scope=None)
    assert error.error == "invalid_scope"


def test_admin_client_gets_admin_principal(db: Database, es_key: ClientKey) -> None:
    register_client(
        db,
        client_id="ops",
        organization_id="silta",
        jwks=es_key.jwks(),
        scopes="system/*.rs",
        is_admin=True,
    )
    result = exchange(db, make_assertion(es_key, "ops"), scope="admin system/*.read")
    assert result.scope == "system/*.read admin"
    principal = verify_access_token(db, result.access_token, audience=FHIR_BASE, now=NOW)
    assert principal.is_admin


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
        ({"grant_type": None}, "invalid_request"),
        (
            {"client_assertion_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"},
            "invalid_request",
        ),
        ({"client_assertion_type": None}, "invalid_request"),
        ({"client_assertion": ""}, "invalid_request"),
        ({"client_assertion": "not-a-jwt"}, "invalid_client"),
    ],
)
def test_bad_request_fields(
    client_db: Database, es_key: ClientKey, fields: dict[str, Any], error: str
) -> None:
    result = rejected(client_db, make_assertion(es_key, CLIENT_ID), **fields)
    assert result.error == error
    assert result.status == (401 if error == "invalid_client" else 400)
    assert result.to_json() == {"error": error, "error_description": result.description}


def _unsigned(claims: dict[str, Any], kid: str) -> str:
    header = jwt.utils.base64url_encode(orjson.dumps({"alg": "none", "kid": kid}))
    payload = jwt.utils.base64url_encode(orjson.dumps(claims))
    return f"{header.decode()}.{payload.decode()}."


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown client", "unknown client"),
        ("unknown kid", "no registered key"),
        ("other key", "does not verify"),
        ("alg none", "not accepted"),
        ("alg HS256", "not accepted"),
        ("alg mismatch", "registered for alg"),
        ("no kid", '"kid"'),
        ("iss != sub", '"iss" and "sub"'),
        ("no iss", '"iss"'),
        ("wrong aud", '"aud"'),
        ("no exp", '"exp"'),
        ("exp too far", "at most 300 s ahead"),
        ("expired", "expired"),
        ("no jti", '"jti"'),
        ("nbf future", "not yet valid"),
    ],
)
def test_bad_assertions_are_invalid_client(
    client_db: Database, es_key: ClientKey, rs_key: ClientKey, case: str, message: str
) -> None:
    assertion = {
        "unknown client": lambda: make_assertion(es_key, "someone-else"),
        "unknown kid": lambda: make_assertion(make_key("ES384", kid="es-9"), CLIENT_ID),
        "other key": lambda: make_assertion(make_key("ES384", kid="es-1"), CLIENT_ID),
        "alg none": lambda: _unsigned(
            {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": TOKEN_URL, "exp": NOW + 60, "jti": "n"},
            "es-1",
        ),
        "alg HS256": lambda: jwt.encode(
            {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": TOKEN_URL, "exp": NOW + 60, "jti": "h"},
            "a-shared-secret-of-at-least-32-bytes!",
            algorithm="HS256",
            headers={"kid": "es-1"},
        ),
        "alg mismatch": lambda: make_assertion(
            ClientKey("es-1", "RS384", rs_key.private_key), CLIENT_ID
        ),
        "no kid": lambda: jwt.encode(
            {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": TOKEN_URL, "exp": NOW + 60, "jti": "k"},
            es_key.private_key,
            algorithm="ES384",
        ),
        "iss != sub": lambda: make_assertion(es_key, CLIENT_ID, sub="another"),
        "no iss": lambda: make_assertion(es_key, CLIENT_ID, omit=("iss",)),
        "wrong aud": lambda: make_assertion(es_key, CLIENT_ID, aud="http://testserver/token"),
        "no exp": lambda: make_assertion(es_key, CLIENT_ID, omit=("exp",)),
        "exp too far": lambda: make_assertion(es_key, CLIENT_ID, lifetime=600),
        "expired": lambda: make_assertion(es_key, CLIENT_ID, lifetime=-120),
        "no jti": lambda: make_assertion(es_key, CLIENT_ID, omit=("jti",)),
        "nbf future": lambda: make_assertion(es_key, CLIENT_ID, nbf=NOW + 120),
    }[case]()
    error = rejected(client_db, assertion)
    assert (error.error, error.status) == ("invalid_client", 401)
    assert message in error.description


def test_disabled_client_is_rejected(client_db: Database, es_key: ClientKey) -> None:
    disable_client(client_db, CLIENT_ID)
    error = rejected(client_db, make_assertion(es_key, CLIENT_ID))
    assert error.error == "invalid_client" and "disabled" in error.description


def test_replayed_jti_is_rejected(client_db: Database, es_key: ClientKey) -> None:
    assertion = make_assertion(es_key, CLIENT_ID, jti="once")
    exchange(client_db, assertion)
    error = rejected(client_db, assertion)
    assert error.error == "invalid_client" and "replay" in error.description
    again = make_assertion(es_key, CLIENT_ID, jti="once", now=NOW + 10)
    assert rejected(client_db, again, now=NOW + 10).error == "invalid_client"
    later = NOW + 600
    exchange(client_db, make_assertion(es_key, CLIENT_ID, jti="once", now=later), now=later)


def _token(db: Database, key: ClientKey, now: int = NOW) -> str:
    return exchange(db, make_assertion(key, CLIENT_ID, now=now), now=now).access_token


def test_access_token_failures(client_db: Database, es_key: ClientKey) -> None:
    token = _token(client_db, es_key)
    verify = verify_access_token

    def fails(bad: str | None, message: str, **kwargs: Any) -> InvalidToken:
        options: dict[str, Any] = {"audience": FHIR_BASE, "now": NOW}
        options.update(kwargs)
        with pytest.raises(InvalidToken) as info:
            verify(client_db, bad, **options)
        assert message in info.value.diagnostics
        assert info.value.status == 401
        return info.value

    missing = fails(None, "required")
    assert isinstance(missing, MissingToken)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="silta"'
    expired = fails(token, "expired", now=NOW + 300)
    assert expired.headers["WWW-Authenticate"] == (
        'Bearer realm="silta", error="invalid_token", '
        'error_description="the access token has expired"'
    )
    fails(token, "aud", audience="http://elsewhere/fhir")
    fails(token, "issuer", issuer="http://elsewhere/auth")
    assert verify(client_db, token, audience=FHIR_BASE, issuer=ISSUER, now=NOW)
    fails("garbage", "not a valid JWT")

    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    forged_key = make_key("ES384")
    forged = jwt.encode(claims, forged_key.private_key, algorithm="ES384", headers={"kid": kid})
    fails(forged, "does not verify")
    fails(_unsigned(claims, kid), "wrong alg")
    unknown = jwt.encode(claims, forged_key.private_key, algorithm="ES384", headers={"kid": "x"})
    fails(unknown, "unknown key")
    no_kid = jwt.encode(claims, forged_key.private_key, algorithm="ES384")
    fails(no_kid, '"kid"')
    tampered = token.split(".")
    tampered[1] = jwt.utils.base64url_encode(
        orjson.dumps({**claims, "scope": "system/*.cruds"})
    ).decode()
    fails(".".join(tampered), "does not verify")

    disable_client(client_db, CLIENT_ID)
    fails(token, "disabled")


def test_rotation_old_tokens_still_verify(client_db: Database, es_key: ClientKey) -> None:
    old_token = _token(client_db, es_key)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_key = rotate_signing_key(client_db, algorithm="RS384", now=NOW + 1)
    assert verify_access_token(client_db, old_token, audience=FHIR_BASE, now=NOW + 2)
    new_token = _token(client_db, es_key, now=NOW + 2)
    header = jwt.get_unverified_header(new_token)
    assert header["kid"] == new_key.kid != old_kid
    assert header["alg"] == "RS384"
    assert verify_access_token(client_db, new_token, audience=FHIR_BASE, now=NOW + 3)
    after = NOW + 1 + MAX_ACCESS_TOKEN_LIFETIME
    with pytest.raises(InvalidToken, match="unknown key"):
        verify_access_token(client_db, old_token, audience=FHIR_BASE, now=after)


def test_lifetime_bounds(client_db: Database, es_key: ClientKey) -> None:
    result = exchange(client_db, make_assertion(es_key, CLIENT_ID), lifetime=900)
    assert result.expires_in == 900
    with pytest.raises(ValueError):
        exchange(client_db, make_assertion(es_key, CLIENT_ID), lifetime=901)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer  xyz ", "xyz"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_unique_jti_per_client(client_db: Database, es_key: ClientKey) -> None:
    other = make_key("ES384", kid="es-1")
    register_client(
        client_db,
        client_id="other",
        organization_id="kela",
        jwks=other.jwks(),
        scopes="system/Task.rs",
    )
    jti = uuid.uuid4().hex
    exchange(client_db, make_assertion(es_key, CLIENT_ID, jti=jti))
    exchange(client_db, make_assertion(other, "other", jti=jti))
