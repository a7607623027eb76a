"""The closed loop of the Kela exchange (Social Welfare Act 1301/2014 §35): every change
of a notification Task's status goes back to Kela as a ``NotificationFeedback``, and a
decision on a forwarded application for supplementary or preventive social assistance
(the application Task completed with its outputs) as a ``MunicipalAssistanceDecision``.

The message is queued in the outbox in the same transaction as the Task change that
causes it, with a message id derived from the Task version, so it is sent exactly as
often as the change is committed. Only status and the decision's coded facts leave;
never the content of the social services' own records (the mappings say what goes).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy import Connection

from adapters.kela import KelaMessageError, municipal_assistance_decision, notification_feedback
from adapters.kela.functions import stable_message_id
from adapters.xroad.outbound import enqueue_request
from gateway.errors import Unprocessable
from gateway.policy import Requester
from gateway.policy.engine import ResourceFacts
from gateway.policy.trust import TrustPolicy
from gateway.services.context import RequestContext
from gateway.services.resources import now_micros
from gateway.store import repository
from gateway.store.raw import RawExecutor
from gateway.store.repository import StoredResource

log = logging.getLogger(__name__)

KELA_TASK_CODES = "https://silta.example.org/fhir/CodeSystem/kela-task-code"
NOTIFICATION_TASK = "handle-concern-notification"
APPLICATION_TASK = "handle-social-assistance-application"
# Message → the purpose of use under which it discloses to Kela.
PURPOSES = {
    "NotificationFeedback": "concern-notification",
    "MunicipalAssistanceDecision": "social-assistance",
}
_WATCHED = ("status", "businessStatus", "statusReason")


def kela_task_kind(task: dict[str, Any]) -> str | None:
    for coding in (task.get("code") or {}).get("coding") or ():
        if coding.get("system") == KELA_TASK_CODES:
            return str(coding.get("code"))
    return None


def _organization_id(reference: Any) -> str | None:
    value = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(value, str) and value.startswith("Organization/"):
        return value.split("/", 1)[1]
    return None


def current_resource(conn: Connection, res_type: str, res_id: str) -> dict[str, Any] | None:
    """The current version of a resource, or None (unknown or deleted)."""
    stored = repository.get_current(RawExecutor.of(conn), res_type, res_id)
    if stored is None or stored.body is None:
        return None
    found: dict[str, Any] = orjson.loads(stored.body)
    return found


def _current(conn: Connection, reference: Any) -> dict[str, Any] | None:
    """The current version of a referenced resource (``Type/id``), or None."""
    value = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(value, str) or value.count("/") != 1:
        return None
    res_type, res_id = value.split("/")
    return current_resource(conn, res_type, res_id)


def task_changed(
    ctx: RequestContext, conn: Connection, stored: StoredResource, previous: StoredResource | None
) -> None:
    """The write hook: queues the message a Kela Task's change owes Kela, if any."""
    if stored.res_type != "Task" or stored.body is None:
        return
    task: dict[str, Any] = orjson.loads(stored.body)
    kind = kela_task_kind(task)
    if kind not in (NOTIFICATION_TASK, APPLICATION_TASK):
        return
    before: dict[str, Any] = orjson.loads(previous.body) if previous and previous.body else {}
    kela = _organization_id(task.get("requester"))
    if kela is None:
        return
    if kind == NOTIFICATION_TASK:
        # A new notification Task is Kela's own news; feedback follows its changes.
        if not before or all(task.get(k) == before.get(k) for k in _WATCHED):
            return
    elif task.get("status") != "completed" or before.get("status") == "completed":
        return
    service_request = _current(conn, task.get("focus"))
    if service_request is None:
        return
    try:
        if kind == NOTIFICATION_TASK:
            service = "NotificationFeedback"
            body = notification_feedback(task, service_request)
        else:
            area = _current(conn, task.get("owner"))
            if area is None or not task.get("output"):
                return
            service = "MunicipalAssistanceDecision"
            body = municipal_assistance_decision(task, service_request, area)
    except KelaMessageError as error:
        # Refused, so the change and what Kela is told never part ways.
        raise Unprocessable(
            f"The change of Task/{stored.res_id} cannot be reported to Kela: {error.message}"
        ) from error
    # Outbound messages pass the same policy as every other disclosure.
    policy = TrustPolicy(ctx.db, Requester("silta-exchange", kela, PURPOSES[service]), now_micros())
    decision = policy.decide(
        ResourceFacts("Task", stored.res_id, stored.custodian, stored.client, task)
    )
    if not decision.permitted:
        log.warning("%s for Task/%s withheld: %s", service, stored.res_id, decision.reason)
        return
    try:
        enqueue_request(
            conn,
            organization_id=kela,
            service_code=service,
            body=body,
            message_id=stable_message_id(service, f"Task/{stored.res_id}", str(stored.version)),
        )
    except Unprocessable as error:
        # The organisation has no X-Road registration: the change itself must not fail.
        log.warning("%s for Task/%s not queued: %s", service, stored.res_id, error.diagnostics)
