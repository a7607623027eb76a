"""The trust layer in the benchmark: two organisations, a client of each, an agreement
between them, and bearer tokens for the load client.

With ``--auth on`` the data is loaded by Kela's client and every measured request is
made by the wellbeing area's client through an agreement in force (no consent needed), so
reads and searches take the cross-organisation path of the policy: the SQL visibility
condition, a decision per disclosed resource and the access and disclosure log.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.admin import agreements as svc
from gateway.admin import organizations as orgs
from gateway.auth.clients import register_client
from gateway.auth.tokens import JWT_BEARER_ASSERTION
from gateway.config import Settings
from gateway.fhir.resource_types import STORED_TYPES
from gateway.services.context import RequestContext
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from mappings.municipalities import municipalities_of_area

PROVIDER = "kela"
RECIPIENT = "pirha"
PURPOSE = "care-coordination"


class Parties:
    """The registered clients' keys, and tokens fetched from a running gateway."""

    def __init__(self) -> None:
        self.keys = {org: ec.generate_private_key(ec.SECP384R1()) for org in (PROVIDER, RECIPIENT)}

    def register(self, database_url: str) -> None:
        """Organisations, clients and the agreement, straight on the database."""
        db = Database(database_url)
        try:
            upgrade(db.engine)
            settings = Settings(database_url=database_url)
            ctx = RequestContext(db=db, settings=settings, base_url="http://bench/fhir")
            orgs.create_organization(ctx, org=orgs.Organization(PROVIDER, "Kela", "kela"))
            orgs.create_organization(
                ctx,
                org=orgs.Organization(
                    RECIPIENT,
                    "Pirkanmaan hyvinvointialue",
                    "wellbeing-area",
                    municipalities=tuple(municipalities_of_area("08")),
                ),
            )
            for org, key in self.keys.items():
                jwk = dict(ECAlgorithm.to_jwk(key.public_key(), as_dict=True))
                jwk.update({"kid": org, "alg": "ES384"})
                register_client(
                    db,
                    client_id=f"{org}-bench",
                    organization_id=org,
                    jwks={"keys": [jwk]},
                    scopes="system/*.cruds",
                )
            terms = svc.AgreementTerms(
                provider=PROVIDER,
                recipient=RECIPIENT,
                categories=tuple(svc.Category(t) for t in STORED_TYPES),
                purposes=(PURPOSE,),
                legal_basis=svc.LegalBasis("1301/2014 §41", "Multidisciplinary cooperation"),
                consent_required=False,
                valid_from=date.today() - timedelta(days=1),
            )
            agreement = svc.create_agreement(db, terms=terms, actor="bench")
            for org in (PROVIDER, RECIPIENT):
                svc.approve(db, agreement.id, as_org=org, actor="bench")
        finally:
            db.dispose()

    def headers(self, org: str, root: str) -> bytes:
        """Request header lines carrying a fresh token of ``org``'s client."""
        token_url = f"{root}/auth/token"
        claims = {
            "iss": f"{org}-bench",
            "sub": f"{org}-bench",
            "aud": token_url,
            "exp": int(time.time()) + 240,
            "jti": uuid.uuid4().hex,
        }
        assertion = jwt.encode(claims, self.keys[org], algorithm="ES384", headers={"kid": org})
        response = httpx.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": "system/*.cruds",
                "client_assertion_type": JWT_BEARER_ASSERTION,
                "client_assertion": assertion,
            },
        )
        response.raise_for_status()
        token = response.json()["access_token"]
        return f"Authorization: Bearer {token}\r\nX-Purpose-Of-Use: {PURPOSE}\r\n".encode()
