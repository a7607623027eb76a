"""The admin REST API (JSON): organisations, data-sharing agreements, policy decisions
explained, and the access and disclosure log.

Mounted under ``/admin/api`` (``app.include_router(router, prefix="/admin/api")``).
Errors are raised as ``gateway.errors`` types and answered as OperationOutcomes by the
application's handlers (``gateway.api.errors``): unknown ids 404, invalid lifecycle
transitions 409, invalid content 422 with one issue per offending field.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from gateway.admin import agreements as svc
from gateway.admin import organizations as orgs
from gateway.audit import log as audit_log
from gateway.audit.fhir import to_audit_events
from gateway.auth.routes import auth_urls
from gateway.auth.tokens import InsufficientScope, bearer_token, verify_access_token
from gateway.errors import BadRequest
from gateway.policy.trust import explain
from gateway.search.values import format_instant
from gateway.services.context import RequestContext
from gateway.store.database import Database


def require_admin(request: Request) -> str | None:
    """The authenticated admin making the request, recorded as the actor of agreement
    events: a bearer token of this gateway carrying the ``admin`` scope (RFC 6750 §2.1).
    Missing or bad tokens answer 401, tokens without the scope 403."""
    database: Database = request.app.state.database
    principal = verify_access_token(
        database,
        bearer_token(request.headers.get("authorization")),
        audience=auth_urls(request).fhir_base,
    )
    if not principal.is_admin:
        raise InsufficientScope("The admin API needs a token with the 'admin' scope")
    return f"{principal.client_id} ({principal.organization_id})"


def _actor(admin: str | None) -> str:
    return admin or "admin-api"


class IdentifierModel(BaseModel):
    system: str = Field(description="e.g. urn:oid:1.2.246.10 (Y-tunnus)")
    value: str


class OrganizationIn(BaseModel):
    id: str = Field(description="FHIR id; also the id of the FHIR Organization")
    name: str
    type: str = Field(description="Code of the Silta organization-type CodeSystem")
    identifiers: list[IdentifierModel] = []
    municipalities: list[str] = Field(
        default=[], description="Wellbeing areas: codes of urn:oid:1.2.246.537.6.21 served"
    )


class OrganizationOut(OrganizationIn):
    reference: str = Field(description="Reference to the FHIR Organization")

    @classmethod
    def of(cls, org: orgs.Organization) -> OrganizationOut:
        return cls(
            id=org.id,
            name=org.name,
            type=org.type,
            identifiers=[IdentifierModel(system=i.system, value=i.value) for i in org.identifiers],
            municipalities=list(org.municipalities),
            reference=f"Organization/{org.id}",
        )


class CategoryModel(BaseModel):
    resource_type: str
    category: str | None = Field(default=None, description="Optional category as system|code")


class LegalBasisModel(BaseModel):
    statute: str = Field(description="Statute reference, e.g. 1301/2014 §41")
    text: str = ""


class AgreementIn(BaseModel):
    provider: str
    recipient: str
    categories: list[CategoryModel]
    purposes: list[str] = Field(description="Codes of the Silta purpose-of-use CodeSystem")
    legal_basis: LegalBasisModel
    consent_required: bool = True
    write_allowed: bool = False
    valid_from: date | None = None
    valid_until: date | None = None

    def terms(self) -> svc.AgreementTerms:
        return svc.AgreementTerms(
            provider=self.provider,
            recipient=self.recipient,
            categories=tuple(
                svc.parse_category(c.resource_type, c.category) for c in self.categories
            ),
            purposes=tuple(self.purposes),
            legal_basis=svc.LegalBasis(self.legal_basis.statute, self.legal_basis.text),
            consent_required=self.consent_required,
            write_allowed=self.write_allowed,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
        )


class AgreementOut(BaseModel):
    id: str
    provider: str
    recipient: str
    categories: list[CategoryModel]
    purposes: list[str]
    legal_basis: LegalBasisModel
    consent_required: bool
    write_allowed: bool
    valid_from: date
    valid_until: date | None
    status: svc.Status
    approvals: list[str]
    version: int
    created: str
    updated: str

    @classmethod
    def fields_of(cls, a: svc.Agreement) -> dict[str, Any]:
        return {
            "id": a.id,
            "provider": a.provider,
            "recipient": a.recipient,
            "categories": [
                CategoryModel(resource_type=c.resource_type, category=c.token) for c in a.categories
            ],
            "purposes": list(a.purposes),
            "legal_basis": LegalBasisModel(statute=a.legal_basis.statute, text=a.legal_basis.text),
            "consent_required": a.consent_required,
            "write_allowed": a.write_allowed,
            "valid_from": a.valid_from,
            "valid_until": a.valid_until,
            "status": a.status,
            "approvals": list(a.approvals),
            "version": a.version,
            "created": format_instant(a.created_at),
            "updated": format_instant(a.updated_at),
        }

    @classmethod
    def of(cls, a: svc.Agreement) -> AgreementOut:
        return cls(**cls.fields_of(a))


class EventOut(BaseModel):
    version: int
    at: str
    actor: str
    action: str
    status: svc.Status
    detail: dict[str, Any]


class AgreementDetail(AgreementOut):
    history: list[EventOut]


class ApproveIn(BaseModel):
    as_org: str = Field(description="The party (provider or recipient) whose admin approves")


class ReasonIn(BaseModel):
    reason: str = ""


router = APIRouter(tags=["admin"])


@router.post("/organizations", status_code=201, response_model=OrganizationOut)
def create_organization(
    body: OrganizationIn, request: Request, admin: str | None = Depends(require_admin)
) -> OrganizationOut:
    """Registers an organisation and its FHIR Organization."""
    org = orgs.Organization(
        id=body.id,
        name=body.name,
        type=body.type,
        identifiers=tuple(orgs.Identifier(i.system, i.value) for i in body.identifiers),
        municipalities=tuple(body.municipalities),
    )
    ctx = RequestContext(
        db=request.app.state.database,
        settings=request.app.state.settings,
        base_url=auth_urls(request).fhir_base,
    )
    return OrganizationOut.of(orgs.create_organization(ctx, org=org))


@router.get("/organizations", response_model=list[OrganizationOut])
def list_organizations(
    request: Request, type: str | None = None, admin: str | None = Depends(require_admin)
) -> list[OrganizationOut]:
    db = request.app.state.database
    return [OrganizationOut.of(o) for o in orgs.list_organizations(db, type=type)]


@router.get("/organizations/{org_id}", response_model=OrganizationOut)
def get_organization(
    org_id: str, request: Request, admin: str | None = Depends(require_admin)
) -> OrganizationOut:
    return OrganizationOut.of(orgs.get_organization(request.app.state.database, org_id))


@router.post("/agreements", status_code=201, response_model=AgreementOut)
def create_agreement(
    body: AgreementIn, request: Request, admin: str | None = Depends(require_admin)
) -> AgreementOut:
    """Records a draft agreement; it becomes active once both parties have approved."""
    db = request.app.state.database
    return AgreementOut.of(svc.create_agreement(db, terms=body.terms(), actor=_actor(admin)))


@router.get("/agreements", response_model=list[AgreementOut])
def list_agreements(
    request: Request,
    provider: str | None = None,
    recipient: str | None = None,
    party: str | None = None,
    status: svc.Status | None = None,
    on_date: date | None = None,
    admin: str | None = Depends(require_admin),
) -> list[AgreementOut]:
    """Agreements matching every given filter; status is the status on ``on_date``."""
    found = svc.list_agreements(
        request.app.state.database,
        provider=provider,
        recipient=recipient,
        party=party,
        status=status,
        on_date=on_date,
    )
    return [AgreementOut.of(a) for a in found]


@router.get("/agreements/{agreement_id}", response_model=AgreementDetail)
def get_agreement(
    agreement_id: str, request: Request, admin: str | None = Depends(require_admin)
) -> AgreementDetail:
    """The agreement with its full history of versions."""
    db = request.app.state.database
    found = svc.get_agreement(db, agreement_id)
    history = [
        EventOut(
            version=e.version,
            at=format_instant(e.at),
            actor=e.actor,
            action=e.action,
            status=e.status,
            detail=e.detail,
        )
        for e in svc.agreement_history(db, agreement_id)
    ]
    return AgreementDetail(**AgreementOut.fields_of(found), history=history)


@router.post("/agreements/{agreement_id}/approve", response_model=AgreementOut)
def approve_agreement(
    agreement_id: str,
    body: ApproveIn,
    request: Request,
    admin: str | None = Depends(require_admin),
) -> AgreementOut:
    db = request.app.state.database
    return AgreementOut.of(svc.approve(db, agreement_id, as_org=body.as_org, actor=_actor(admin)))


def _status_change(change: Callable[..., svc.Agreement]) -> Callable[..., AgreementOut]:
    """The endpoint of one status change that takes an optional reason."""

    def endpoint(
        agreement_id: str,
        request: Request,
        body: ReasonIn | None = None,
        admin: str | None = Depends(require_admin),
    ) -> AgreementOut:
        database = request.app.state.database
        reason = body.reason if body else ""
        return AgreementOut.of(change(database, agreement_id, actor=_actor(admin), reason=reason))

    return endpoint


for _action, _change, _summary in (
    ("suspend", svc.suspend, "Suspend an active agreement"),
    ("resume", svc.resume, "Resume a suspended agreement"),
    ("terminate", svc.terminate, "Terminate an agreement for good"),
):
    router.add_api_route(
        f"/agreements/{{agreement_id}}/{_action}",
        _status_change(_change),
        methods=["POST"],
        response_model=AgreementOut,
        name=f"{_action}_agreement",
        summary=_summary,
    )


@router.get("/decisions/explain")
def explain_decision(
    request: Request,
    requester: str,
    resource: str,
    purpose: str | None = None,
    admin: str | None = Depends(require_admin),
) -> dict[str, Any]:
    """Why a disclosure of ``resource`` (``Type/id``) to the organisation ``requester``
    for ``purpose`` is or is not allowed: the decision, the rule, the agreement and
    consent it rests on, and the redactions that would apply."""
    res_type, slash, res_id = resource.partition("/")
    if not slash or not res_type or not res_id:
        raise BadRequest(f"resource '{resource}' is not Type/id", expression=("resource",))
    return explain(
        request.app.state.database,
        organization=requester,
        res_type=res_type,
        res_id=res_id,
        purpose=purpose,
        now=time.time_ns() // 1000,
    )


def _audit_entries(request: Request, **filters: Any) -> list[dict[str, Any]]:
    request.app.state.audit.flush()
    return audit_log.entries(request.app.state.database, **filters)


@router.get("/audit/events")
def audit_events(
    request: Request,
    patient: str | None = Query(None, description="The client's HETU"),
    organization: str | None = Query(None, description="Requester or provider"),
    kind: str | None = Query(None, pattern="^(access|disclosure)$"),
    before: int | None = Query(None, description="Entries before this sequence number"),
    count: int = Query(100, alias="_count", ge=1, le=1000),
    admin: str | None = Depends(require_admin),
) -> dict[str, Any]:
    """The log as a FHIR searchset Bundle of AuditEvents (BALP), newest first: each
    request's access event and its disclosure events (``kind=disclosure``: only those)."""
    found = _audit_entries(
        request, hetu=patient, organization=organization, kind=kind, before_seq=before, limit=count
    )
    events = [event for entry in found for event in to_audit_events(entry)]
    if kind == audit_log.DISCLOSURE:
        events = [e for e in events if any(c["code"] == "disclose" for c in e.get("subtype", []))]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": event, "search": {"mode": "match"}} for event in events],
    }


@router.get("/audit/client/{hetu}")
def audit_client_extract(
    hetu: str, request: Request, admin: str | None = Depends(require_admin)
) -> dict[str, Any]:
    """The client's log extract (right to know who used or received their data): every
    access to their data and every disclosure of it, newest first."""
    return audit_log.client_extract(_audit_entries(request, hetu=hetu, limit=10_000), hetu)


@router.get("/audit/verify")
def audit_verify(request: Request, admin: str | None = Depends(require_admin)) -> dict[str, Any]:
    """Recomputes the log's hash chain."""
    request.app.state.audit.flush()
    result = audit_log.verify(request.app.state.database)
    return {
        "ok": result.ok,
        "entries": result.entries,
        "broken_at": result.broken_at,
        "problem": result.problem,
    }
