"""``POST /exchange/xroad``: Kela's messages over the Suomi.fi Data Exchange Layer
(X-Road message protocol 4.0, SOAP 1.1).

A message is handled in two stages. The first reads the envelope, maps the calling
X-Road member to its registered organisation and validates and maps the body
(``adapters.kela``); it only reads. The second is one database transaction: a message id
seen before gets the response it got then and stores nothing; otherwise a refusal of
the first stage becomes the SOAP Fault, or the transaction Bundle is stored as that
organisation (custodian, policy, write hooks and access log as for any FHIR request)
and the response is recorded with it. A crash before the commit stores nothing, so
Kela's retry is processed afresh. The first stage runs as one batch for all the
messages that reached the event loop together, one after another, before any of them is
stored (:class:`PreparedBatches`; on the loop, or on a worker thread where service calls
run on threads): run back to back, the parser, the XSD validator and the mapping stay in
the processor's caches, and on threads the batch is one hand-over instead of one a
message.

A notification about a client whose notification Task (or shared CarePlan) is already
open at the same wellbeing area starts no parallel process: no new Task is created, the
new ServiceRequest points at the open one (``supportingInfo``), and the response tells
Kela the client is already being handled (since when, and by whom if an agreement from
the wellbeing area to Kela allows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from adapters.kela import InHand, KelaMessageError, NamedContact, map_inbound, response_for
from adapters.kela.inbound import InboundResult
from adapters.xroad.envelope import (
    CONTENT_TYPE,
    FaultCode,
    XRoadFault,
    XRoadRequest,
    build_fault,
    build_response,
    parse_request,
)
from adapters.xroad.identifiers import ClientId
from adapters.xroad.inbound import find_response, record_response
from adapters.xroad.members import organization_of
from gateway.admin.agreements import active_agreements
from gateway.api.http import on_service_thread, read_body
from gateway.audit.log import AuditLog, audited
from gateway.auth.routes import auth_urls
from gateway.errors import FhirError
from gateway.exchange.directory import RegisterDirectory
from gateway.exchange.loop import NOTIFICATION_TASK, current_resource, kela_task_kind
from gateway.policy import Requester
from gateway.policy.trust import TrustPolicy
from gateway.services import transactions
from gateway.services.context import RequestContext
from gateway.services.resources import lock_conditions, now_micros
from gateway.store import repository
from gateway.store.database import Database
from gateway.store.group_commit import GroupCommitFailed, deferred_commits
from gateway.store.raw import RawExecutor

log = logging.getLogger(__name__)

HETU_SYSTEM = "urn:oid:1.2.246.21"
# Service → the purpose of use of what it stores.
SERVICE_PURPOSES = {
    "ConcernNotification": "concern-notification",
    "ApplicationForwarding": "social-assistance",
    "BenefitDecision": "social-assistance",
}
NOT_STORED = "internal error: nothing was stored; send the message again"
OPEN_TASK = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")


async def xroad_endpoint(request: Request) -> Response:
    """The SOAP endpoint; every refusal is a SOAP 1.1 Fault (HTTP 500, SOAP 1.1 §6.2)."""
    state = request.app.state
    try:
        message = await read_body(request, state.settings.max_body_bytes)
    except FhirError as error:
        return _soap(build_fault(FaultCode.CLIENT, error.diagnostics), 500)
    template = RequestContext(
        db=state.database,
        settings=state.settings,
        base_url=auth_urls(request).fhir_base,
        write_hooks=state.write_hooks,
    )
    if template.services_on_threads:
        on_thread = partial(on_service_thread, request)
        prepared = await state.xroad_batches.prepare(message, offload=on_thread)
        body, status = await on_thread(partial(complete, template, prepared, audit=state.audit))
        return _soap(body, status)
    prepared = await state.xroad_batches.prepare(message)
    await template.db.writers_free()
    # The message's transaction may share its commit with the requests the event loop
    # runs next; the response is sent only once it is committed.
    with deferred_commits() as commits:
        body, status = complete(template, prepared, audit=state.audit)
    try:
        await commits.wait()
    except GroupCommitFailed:
        log.exception("the transaction of an X-Road message could not be committed")
        body, status = build_fault(FaultCode.SERVER, NOT_STORED), 500
    return _soap(body, status)


def _soap(body: bytes, status: int) -> Response:
    return Response(body, status_code=status, media_type=CONTENT_TYPE)


@dataclass(slots=True)
class Prepared:
    """The first stage of one SOAP request: its envelope read (or the Fault refusing
    it), the organisation of its X-Road client, and its body mapped, or the error that
    refuses the body once the message is known not to be a repeat."""

    xroad: XRoadRequest | None
    fault: bytes = b""
    organization: str | None = None
    result: InboundResult | None = None
    error: Exception | None = None

    def mapped(self) -> InboundResult:
        """The mapped body; raises what refused it."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def prepare_all(db: Database, messages: Sequence[bytes]) -> list[Prepared]:
    """The first stage of each message, in order, on one read connection; never raises
    (a failure is kept in the message's :class:`Prepared` for the second stage)."""
    prepared = [_read_envelope(message) for message in messages]
    try:
        with db.read_raw() as raw:
            directory = RegisterDirectory(raw)
            senders: dict[ClientId, str | None] = {}
            for each in prepared:
                if each.xroad is not None:
                    _map_body(raw, directory, senders, each)
    except Exception as error:  # the read connection failed: nothing can be mapped
        for each in prepared:
            if each.xroad is not None and each.result is None and each.error is None:
                each.error = error
    return prepared


def _read_envelope(message: bytes) -> Prepared:
    try:
        return Prepared(parse_request(message))
    except XRoadFault as fault:
        return Prepared(None, fault=fault.envelope())


def _map_body(
    raw: RawExecutor,
    directory: RegisterDirectory,
    senders: dict[ClientId, str | None],
    prepared: Prepared,
) -> None:
    """Maps one message's body; ``senders`` holds the organisations of the X-Road
    clients the batch has looked up so far."""
    xroad = prepared.xroad
    assert xroad is not None
    if xroad.client not in senders:
        senders[xroad.client] = organization_of(raw, xroad.client)
    prepared.organization = senders[xroad.client]
    if prepared.organization is None:
        return
    try:
        prepared.result = map_inbound(
            xroad.service_code, xroad.body, directory, sender=prepared.organization
        )
    except Exception as error:  # raised again after the idempotency check
        prepared.error = error


Offload = Callable[[Callable[[], list[Prepared]]], Awaitable[list[Prepared]]]
"""Runs a batch's first stage elsewhere (``partial(on_service_thread, request)``)."""


class PreparedBatches:
    """Runs the first stage of the messages that reach the event loop together as one
    batch: the first to arrive starts the batch, whose task takes its first step after
    what the loop runs in this pass, and every message that arrives before then joins
    it. The batch runs on the loop, or through ``offload`` (a worker thread, where
    service calls run on threads); every message of a process is handled the same way,
    so the first message's choice holds for its batch."""

    def __init__(self, prepare: Callable[[Sequence[bytes]], list[Prepared]]) -> None:
        self._prepare = prepare
        self._waiting: list[tuple[bytes, asyncio.Future[Prepared]]] = []
        self._running: set[asyncio.Task[None]] = set()  # kept from the collector

    async def prepare(self, message: bytes, *, offload: Offload | None = None) -> Prepared:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prepared] = loop.create_future()
        self._waiting.append((message, future))
        if len(self._waiting) == 1:
            task = loop.create_task(self._run(offload))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await future

    async def _run(self, offload: Offload | None) -> None:
        waiting, self._waiting = self._waiting, []
        work = partial(self._prepare, [message for message, _ in waiting])
        try:
            prepared = work() if offload is None else await offload(work)
        except BaseException as error:  # no request may wait for ever
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), each in zip(waiting, prepared, strict=True):
            if not future.done():
                future.set_result(each)


def exchange(
    template: RequestContext, message: bytes, *, audit: AuditLog | None = None
) -> tuple[bytes, int]:
    """Processes one SOAP request; returns the response envelope and HTTP status."""
    return complete(template, prepare_all(template.db, [message])[0], audit=audit)


def complete(
    template: RequestContext, prepared: Prepared, *, audit: AuditLog | None = None
) -> tuple[bytes, int]:
    """The second stage of one SOAP request: the response envelope and HTTP status."""
    xroad = prepared.xroad
    if xroad is None:
        return prepared.fault, 500
    try:
        return _process(template, prepared, audit), 200
    except XRoadFault as fault:
        return fault.envelope(xroad), 500
    except KelaMessageError as error:
        return build_fault(FaultCode.CLIENT, f"{error.code}: {error.message}", request=xroad), 500
    except FhirError as error:
        code = FaultCode.CLIENT if error.status < 500 else FaultCode.SERVER
        return build_fault(code, error.diagnostics, request=xroad), 500
    except Exception:
        log.exception("X-Road message %s from %s failed", xroad.message_id, xroad.client)
        return build_fault(FaultCode.SERVER, NOT_STORED, request=xroad), 500


def _process(template: RequestContext, prepared: Prepared, audit: AuditLog | None) -> bytes:
    db = template.db
    xroad, organization = prepared.xroad, prepared.organization
    assert xroad is not None
    if organization is None:
        if prepared.error is not None:  # the client could not be looked up
            raise prepared.error
        raise XRoadFault(f"X-Road client {xroad.client} is not registered with this gateway")
    requester = Requester(
        client_id=f"xroad:{xroad.client}",
        organization=organization,
        purpose=SERVICE_PURPOSES.get(xroad.service_code),
        scopes=("system/*.cruds",),
        user=xroad.headers.user_id,
    )
    ctx = RequestContext(
        db=db,
        settings=template.settings,
        base_url=template.base_url,
        policy=TrustPolicy(db, requester, now_micros()),
        write_hooks=template.write_hooks,
    )
    with (
        audited(
            audit,
            requester,
            ctx.policy.touched,
            action="transaction",
            query=f"X-Road {xroad.service_code} {xroad.message_id}",
        ),
        ctx.write() as conn,
    ):
        earlier = find_response(conn, xroad.client, xroad.message_id)
        if earlier is not None:
            return earlier
        result = prepared.mapped()
        # Messages about one client (whose Patient the Bundle creates if none exists)
        # are handled one at a time, so the in-hand check sees the other's Task.
        lock_conditions(ctx, conn, transactions.conditions_of(ctx, result.bundle))
        in_hand = None
        if result.service_code == "ConcernNotification":
            in_hand = _already_in_hand(ctx, conn, result)
        _keep_work_in_progress(conn, result.bundle)
        transactions.process_bundle(ctx, body=result.bundle)
        response = build_response(xroad, response_for(result, in_hand=in_hand))
        record_response(
            conn,
            client_id=xroad.client,
            message_id=xroad.message_id,
            service_code=xroad.service_code,
            response=response,
        )
        return response


def _keep_work_in_progress(conn: Connection, bundle: dict[str, Any]) -> None:
    """A message delivered again (under a new X-Road id) must not reset work the
    wellbeing area has started: Task entries for Tasks that exist are dropped."""
    executor = RawExecutor.of(conn)
    kept = []
    for entry in bundle.get("entry", []):
        url = entry.get("request", {}).get("url", "")
        if (
            entry.get("request", {}).get("method") == "PUT"
            and url.startswith("Task/")
            and repository.get_current(executor, "Task", url.split("/", 1)[1]) is not None
        ):
            continue
        kept.append(entry)
    bundle["entry"] = kept


def _already_in_hand(ctx: RequestContext, conn: Connection, result: InboundResult) -> InHand | None:
    """The "in hand" signal: an open notification Task of the client owned by the same
    wellbeing area (or one of its workers), or an active CarePlan it holds. When found,
    the new notification is linked to it and no new Task is created.

    The client's few Tasks and CarePlans are found through the HETU and the reference
    index, and filtered here: every other criterion matches a large share of the store."""
    area = result.wellbeing_area
    task_id = result.task.split("/", 1)[1] if result.task else None
    open_task: tuple[dict[str, Any], int] | None = None
    open_plan: tuple[dict[str, Any], int] | None = None
    db = RawExecutor.of(conn)
    patients = repository.find_by_token(
        db, "Patient", "identifier", HETU_SYSTEM, result.hetu, limit=20
    )
    for patient in patients:
        reference = f"Patient/{patient.res_id}"
        for row in repository.find_by_reference(db, "Task", "patient", reference, limit=200):
            task = orjson.loads(row.body or b"{}")
            if (
                row.res_id != task_id
                and task.get("status") in OPEN_TASK
                and kela_task_kind(task) == NOTIFICATION_TASK
                and _owned_by(conn, task.get("owner"), area)
            ):
                open_task = (task, row.last_updated)
                break
        if open_task is None and open_plan is None:
            for row in repository.find_by_reference(
                db, "CarePlan", "patient", reference, limit=200
            ):
                plan = orjson.loads(row.body or b"{}")
                if plan.get("status") == "active" and row.custodian == area:
                    open_plan = (plan, row.last_updated)
                    break
        if open_task is not None:
            break
    contact: NamedContact | None = None
    open_request: str | None = None
    if open_task is not None:
        task, updated = open_task
        since = _date(task.get("authoredOn"), updated)
        open_request = (task.get("focus") or {}).get("reference")
        contact = _contact(ctx, conn, task, area)
    elif open_plan is not None:
        plan, updated = open_plan
        since = _date((plan.get("period") or {}).get("start") or plan.get("created"), updated)
    else:
        return None
    for entry in list(result.bundle["entry"]):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Task":
            result.bundle["entry"].remove(entry)
        elif resource.get("resourceType") == "ServiceRequest" and open_request:
            resource.setdefault("supportingInfo", []).append({"reference": open_request})
    return InHand(since=since, contact=contact)


def _owned_by(conn: Connection, owner: Any, area: str) -> bool:
    """The Task owner is the wellbeing area, or one of its PractitionerRoles."""
    reference = owner.get("reference") if isinstance(owner, dict) else None
    if reference == f"Organization/{area}":
        return True
    if not isinstance(reference, str) or not reference.startswith("PractitionerRole/"):
        return False
    role = current_resource(conn, "PractitionerRole", reference.split("/", 1)[1])
    return role is not None and (role.get("organization") or {}).get("reference") == (
        f"Organization/{area}"
    )


def _date(value: Any, fallback_micros: int) -> date:
    if isinstance(value, str) and len(value) >= 10:
        return date.fromisoformat(value[:10])
    return date.fromtimestamp(fallback_micros / 1_000_000)


def _contact(
    ctx: RequestContext, conn: Connection, task: dict[str, Any], area: str
) -> NamedContact | None:
    """The worker handling the open Task (its owner, a PractitionerRole), told to Kela
    only under an agreement in force from the wellbeing area to Kela for notifications."""
    owner = (task.get("owner") or {}).get("reference")
    if not isinstance(owner, str) or not owner.startswith("PractitionerRole/"):
        return None
    kela = ctx.policy.requester.organization if ctx.policy.requester else None
    if kela is None or not active_agreements(
        ctx.db,
        provider=area,
        recipient=kela,
        on_date=date.today(),
        purpose="concern-notification",
    ):
        return None
    role = current_resource(conn, "PractitionerRole", owner.split("/", 1)[1])
    name = (role.get("practitioner") or {}).get("display") if role else None
    if role is None or not name:
        return None
    telecom = {t.get("system"): t.get("value") for t in role.get("telecom") or ()}
    return NamedContact(name=name, phone=telecom.get("phone"), email=telecom.get("email"))
