"""The Kela exchange end to end: X-Road SOAP in, FHIR stored under the trust layer, the
wellbeing area working the Task over FHIR, and the feedback reaching Kela's security
server (a real HTTP server on loopback) through the outbox."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from lxml import etree
from sqlalchemy import delete, event, func, select
from sqlalchemy.exc import OperationalError

from adapters.xroad import members
from adapters.xroad.envelope import build_request, parse_fault
from adapters.xroad.identifiers import ClientId, ServiceId
from adapters.xroad.members import add_member
from gateway.admin import agreements as svc
from gateway.admin.schema import organization_municipality
from gateway.audit.log import entries as audit_entries
from gateway.config import Settings
from gateway.exchange import xroad as xroad_module
from gateway.exchange.loop import task_changed
from gateway.exchange.xroad import Prepared, PreparedBatches, complete, exchange, prepare_all
from gateway.outbox.dispatcher import Dispatcher
from gateway.outbox.messages import list_messages
from gateway.services.context import RequestContext
from gateway.store.database import Database
from gateway.store.schema import resource, resource_version
from tests.policy import Gateway, trust_gateway
from tests.support.fake_security_server import FakeSecurityServer

GOLDEN = Path(__file__).resolve().parents[2] / "mappings" / "kela" / "golden"
KELA = ClientId("FI", "GOV", "0246246-0", "kela-silta")
GATEWAY = ClientId("FI", "GOV", "1234567-8", "silta")
NS = "urn:silta:kela:concern-notification:1"


@pytest.fixture
def kela_server() -> Iterator[FakeSecurityServer]:
    with FakeSecurityServer() as server:
        yield server


@pytest.fixture
def gw(
    database: Database, kela_server: FakeSecurityServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with _kela_gateway(database, kela_server, monkeypatch) as gateway:
        yield gateway


@contextmanager
def _kela_gateway(
    database: Database,
    kela_server: FakeSecurityServer,
    monkeypatch: pytest.MonkeyPatch,
    service_threads: bool | None = None,
) -> Iterator[Gateway]:
    monkeypatch.setenv("SILTA_XROAD_CLIENT", str(GATEWAY))
    with trust_gateway(database, service_threads=service_threads) as gateway:
        with database.write() as conn:
            add_member(
                conn, client=KELA, organization_id="kela", security_server_url=kela_server.url
            )
        # Kela shares notifications with the wellbeing area, which may work the Task.
        gateway.agree(
            categories=tuple(
                svc.Category(t) for t in ("ServiceRequest", "Task", "Patient", "Consent")
            ),
            write_allowed=True,
        )
        yield gateway


def _body(name: str, service: str = "concern-notification") -> etree._Element:
    return etree.fromstring((GOLDEN / service / f"{name}.input.xml").read_bytes())


def _envelope(body: etree._Element, message_id: str, client: ClientId = KELA) -> bytes:
    service = ServiceId(GATEWAY, etree.QName(body).localname)
    return build_request(client=client, service=service, message_id=message_id, body=body)


def _post(gw: Gateway, envelope: bytes) -> Any:
    return gw.client.post(
        "/exchange/xroad", content=envelope, headers={"Content-Type": "text/xml; charset=utf-8"}
    )


def _counts(database: Database) -> tuple[int, int]:
    with database.read() as conn:
        current = conn.execute(select(func.count()).select_from(resource)).scalar_one()
        versions = conn.execute(select(func.count()).select_from(resource_version)).scalar_one()
    return int(current), int(versions)


def _response_field(response: Any, name: str) -> str | None:
    found = etree.fromstring(response.content).find(f".//{{*}}{name}")
    return None if found is None else found.text


@pytest.mark.parametrize("service_threads", [True, False], ids=["threads", "event-loop"])
def test_messages_are_handled_alike_on_threads_and_on_the_event_loop(
    database: Database,
    kela_server: FakeSecurityServer,
    monkeypatch: pytest.MonkeyPatch,
    service_threads: bool,
) -> None:
    with _kela_gateway(database, kela_server, monkeypatch, service_threads) as gw:
        registered = _counts(database)
        envelope = _envelope(_body("with-consent"), "msg-path-1")
        response = _post(gw, envelope)
        assert response.status_code == 200, response.text
        stored = _counts(database)
        # Patient, ServiceRequest, Consent and Task, each in its first version.
        assert (stored[0] - registered[0], stored[1] - registered[1]) == (4, 4)
        assert _post(gw, envelope).content == response.content
        bad = _body("with-consent")
        bad.find(f".//{{{NS}}}Hetu").text = "150388-922A"
        fault = _post(gw, _envelope(bad, "msg-path-2"))
        assert fault.status_code == 500 and "invalid-hetu" in fault.text
        assert _counts(database) == stored


def test_notification_is_stored_once_and_answered_the_same(gw: Gateway, database: Database) -> None:
    envelope = _envelope(_body("with-consent"), "msg-1")
    response = _post(gw, envelope)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    service_request = _response_field(response, "ServiceRequestId")
    assert service_request and service_request.startswith("kela-cn-")
    stored = _counts(database)
    # The same X-Road message id again: the same response, nothing stored.
    again = _post(gw, envelope)
    assert again.status_code == 200 and again.content == response.content
    assert _counts(database) == stored
    # Kela holds what it sent; the wellbeing area sees it through the agreement.
    kela = gw.headers("kela")
    sr = gw.client.get(f"/fhir/ServiceRequest/{service_request}", headers=kela).json()
    assert {"system": "https://silta.example.org/fhir/CodeSystem/custodian", "code": "kela"} in sr[
        "meta"
    ]["tag"]
    pirha = gw.headers("pirha", purpose="concern-notification")
    tasks = gw.client.get("/fhir/Task?owner=Organization/pirha&status=requested", headers=pirha)
    assert tasks.json()["total"] == 1
    # The same notification under a new X-Road id changes nothing either.
    assert _post(gw, _envelope(_body("with-consent"), "msg-1-resent")).status_code == 200
    assert _counts(database) == stored


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda b: b.find(f".//{{{NS}}}Hetu").__setattr__("text", "150388-922A"), "invalid-hetu"),
        (
            lambda b: b.find(f".//{{{NS}}}MunicipalityCode").__setattr__("text", "999"),
            "unknown-municipality",
        ),
        (lambda b: b.remove(b.find(f"{{{NS}}}SentAt")), "schema-invalid"),
    ],
)
def test_bad_notifications_are_faults_and_store_nothing(
    gw: Gateway, database: Database, mutate: Any, expected: str
) -> None:
    before = _counts(database)
    body = copy.deepcopy(_body("with-consent"))
    mutate(body)
    response = _post(gw, _envelope(body, f"bad-{expected}"))
    assert response.status_code == 500
    fault = parse_fault(response.content)
    assert fault is not None and expected in fault.string
    assert _counts(database) == before


def test_unknown_client_not_xml_and_xxe_are_faults(gw: Gateway) -> None:
    stranger = ClientId("FI", "COM", "7654321-0", "other")
    response = _post(gw, _envelope(_body("with-consent"), "m-stranger", client=stranger))
    fault = parse_fault(response.content)
    assert response.status_code == 500 and fault is not None
    assert "not registered" in fault.string
    response = _post(gw, b"not xml at all")
    assert response.status_code == 500 and parse_fault(response.content) is not None
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>&e;</Body></Envelope>'
    )
    response = _post(gw, xxe)
    fault = parse_fault(response.content)
    assert response.status_code == 500 and fault is not None
    assert "root:" not in response.text


def test_working_the_task_sends_feedback_to_kela(
    gw: Gateway, database: Database, kela_server: FakeSecurityServer
) -> None:
    response = _post(gw, _envelope(_body("with-consent"), "msg-loop"))
    assert response.status_code == 200
    pirha = gw.headers("pirha", purpose="concern-notification")
    task = gw.client.get("/fhir/Task?owner=Organization/pirha", headers=pirha).json()["entry"][0][
        "resource"
    ]
    task["status"] = "accepted"
    assert gw.client.put(f"/fhir/Task/{task['id']}", json=task, headers=pirha).status_code == 200
    task = gw.client.get(f"/fhir/Task/{task['id']}", headers=pirha).json()
    task["status"] = "in-progress"
    task["businessStatus"] = {
        "coding": [
            {
                "system": "https://silta.example.org/fhir/CodeSystem/concern-notification-business-status",
                "code": "client-contacted",
            }
        ]
    }
    response = gw.client.put(f"/fhir/Task/{task['id']}", json=task, headers=pirha)
    assert response.status_code == 200, response.text
    with database.read() as conn:
        queued = list_messages(conn, limit=10)
    assert [m.service_code for m in queued] == ["NotificationFeedback", "NotificationFeedback"]
    dispatcher = Dispatcher(database)
    try:
        assert dispatcher.drain().delivered == 2
    finally:
        dispatcher.close()
    received = kela_server.requests
    assert len(received) == 2 and all(r.delivered for r in received)
    last = etree.fromstring(received[-1].body)
    assert last.findtext(".//{*}Status") == "in-progress"
    assert last.findtext(".//{*}BusinessStatus") == "client-contacted"
    # Status only: nothing of the wellbeing area's own records.
    assert b"Asiakas" not in received[-1].body
    assert len(set(kela_server.delivered_ids())) == 2


def test_second_notification_for_a_client_in_hand(gw: Gateway, database: Database) -> None:
    assert _post(gw, _envelope(_body("with-consent"), "first")).status_code == 200
    second = copy.deepcopy(_body("with-consent"))
    second.find(f"{{{NS}}}NotificationId").text = "KELA-SHL35-2025-000999"
    response = _post(gw, _envelope(second, "second"))
    assert response.status_code == 200, response.text
    assert _response_field(response, "ReceiptStatus") == "already-in-hand"
    assert _response_field(response, "Since") == "2025-01-14"
    assert _response_field(response, "Contact") is None
    pirha = gw.headers("pirha", purpose="concern-notification")
    tasks = gw.client.get("/fhir/Task?owner=Organization/pirha", headers=pirha).json()
    assert tasks["total"] == 1
    requests = gw.client.get("/fhir/ServiceRequest", headers=gw.headers("kela")).json()
    assert requests["total"] == 2
    linked = [e["resource"] for e in requests["entry"] if e["resource"].get("supportingInfo")]
    assert len(linked) == 1


def test_notifications_about_one_client_at_once_start_one_process(
    gw: Gateway, database: Database
) -> None:
    """Notifications about one client arriving side by side (PostgreSQL runs their
    transactions in parallel) are handled one at a time: one Patient, one Task, and the
    others answered as already in hand."""
    template = RequestContext(
        db=database,
        settings=Settings(database_url=database.url),
        base_url="http://testserver/fhir",
        write_hooks=(task_changed,),
    )
    envelopes = []
    for n in range(4):
        body = copy.deepcopy(_body("with-consent"))
        body.find(f"{{{NS}}}NotificationId").text = f"KELA-SHL35-2025-00{n:04d}"
        envelopes.append(_envelope(body, f"side-by-side-{n}"))
    barrier = threading.Barrier(len(envelopes))
    statuses: list[str | None] = []

    def send(envelope: bytes) -> None:
        barrier.wait()
        response, status = exchange(template, envelope)
        assert status == 200, response
        found = etree.fromstring(response).find(".//{*}ReceiptStatus")
        statuses.append(None if found is None else found.text)

    threads = [threading.Thread(target=send, args=(e,)) for e in envelopes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(s or "" for s in statuses).count("already-in-hand") == 3, statuses
    kela = gw.headers("kela")
    assert gw.client.get("/fhir/Patient", headers=kela).json()["total"] == 1
    pirha = gw.headers("pirha", purpose="concern-notification")
    assert gw.client.get("/fhir/Task?owner=Organization/pirha", headers=pirha).json()["total"] == 1


def _work_task(gw: Gateway, org: str, purpose: str, **changes: Any) -> dict[str, Any]:
    headers = gw.headers(org, purpose=purpose)
    bundle = gw.client.get("/fhir/Task?owner=Organization/pirha", headers=headers).json()
    task: dict[str, Any] = bundle["entry"][0]["resource"]
    task.update(changes)
    response = gw.client.put(f"/fhir/Task/{task['id']}", json=task, headers=headers)
    assert response.status_code == 200, response.text
    updated: dict[str, Any] = response.json()
    return updated


def test_in_hand_names_the_worker_when_an_agreement_allows(gw: Gateway) -> None:
    assert _post(gw, _envelope(_body("with-consent"), "first")).status_code == 200
    role = gw.create(
        "pirha",
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"display": "Mikko Heikkinen"},
            "organization": {"reference": "Organization/pirha"},
            "telecom": [{"system": "phone", "value": "+358 40 806 5000"}],
        },
    )
    _work_task(
        gw,
        "pirha",
        "concern-notification",
        status="accepted",
        owner={"reference": f"PractitionerRole/{role['id']}"},
    )
    gw.agree(provider="pirha", recipient="kela", categories=(svc.Category("Task"),))
    second = copy.deepcopy(_body("with-consent"))
    second.find(f"{{{NS}}}NotificationId").text = "KELA-SHL35-2025-000777"
    response = _post(gw, _envelope(second, "second"))
    assert _response_field(response, "ReceiptStatus") == "already-in-hand"
    assert _response_field(response, "Name") == "Mikko Heikkinen"
    assert _response_field(response, "Phone") == "+358 40 806 5000"


def test_application_decision_goes_to_kela(
    gw: Gateway, database: Database, kela_server: FakeSecurityServer
) -> None:
    body = copy.deepcopy(_body("supplementary-with-attachments", "application-forwarding"))
    body.find(".//{*}MunicipalityCode").text = "837"
    response = _post(gw, _envelope(body, "application"))
    assert response.status_code == 200, response.text
    gw.agree(
        categories=(svc.Category("ServiceRequest"), svc.Category("Task")),
        purposes=("social-assistance",),
        write_allowed=True,
    )
    decided = GOLDEN / "municipal-assistance-decision" / "partly-granted.input.json"
    output = orjson.loads(decided.read_bytes())["task"]["output"]
    _work_task(gw, "pirha", "social-assistance", status="in-progress")
    with database.read() as conn:
        assert list_messages(conn, limit=10) == []  # no decision yet
    _work_task(gw, "pirha", "social-assistance", status="completed", output=output)
    dispatcher = Dispatcher(database)
    try:
        assert dispatcher.drain().delivered == 1
    finally:
        dispatcher.close()
    (received,) = kela_server.requests
    decision = etree.fromstring(received.body)
    assert etree.QName(decision.find(".//{*}Body/*")).localname == "MunicipalAssistanceDecision"
    assert decision.findtext(".//{*}Outcome") == "partly-granted"


def test_forwarded_notification_is_visible_to_its_target(gw: Gateway) -> None:
    response = _post(gw, _envelope(_body("with-consent"), "msg-forward"))
    original = _response_field(response, "ServiceRequestId")
    forwarded = gw.create(
        "pirha",
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "basedOn": [{"reference": f"ServiceRequest/{original}"}],
            "subject": {"reference": "Patient/unknown-to-etsiva"},
            "performer": [{"reference": "Organization/etsiva-tampere"}],
        },
    )
    etsiva = gw.headers("etsiva-tampere", purpose="multidisciplinary-cooperation")
    url = f"/fhir/ServiceRequest/{forwarded['id']}"
    assert gw.client.get(url, headers=etsiva).status_code == 404
    gw.agree(
        provider="pirha",
        recipient="etsiva-tampere",
        purposes=("multidisciplinary-cooperation",),
        categories=(svc.Category("ServiceRequest"),),
    )
    assert gw.client.get(url, headers=etsiva).status_code == 200
    # The original stays Kela's: the outreach workers do not see it.
    assert gw.client.get(f"/fhir/ServiceRequest/{original}", headers=etsiva).status_code == 404


@contextmanager
def _crash_before_the_commit(database: Database) -> Iterator[None]:
    """The process fails after the message's work and before its commit."""
    from gateway.exchange import xroad

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(xroad, "record_response", crash)
        yield


@contextmanager
def _commit_fails(database: Database) -> Iterator[None]:
    """The commit itself fails (e.g. a full disk), after all the work was done."""

    def refuse(_conn: Any) -> None:
        raise OSError("disk full")

    event.listen(database.engine, "commit", refuse)
    try:
        yield
    finally:
        event.remove(database.engine, "commit", refuse)


@pytest.mark.parametrize("failure", [_crash_before_the_commit, _commit_fails])
def test_a_message_whose_transaction_fails_stores_nothing_and_can_be_resent(
    gw: Gateway, database: Database, failure: Callable[[Database], AbstractContextManager[None]]
) -> None:
    before = _counts(database)
    message_id = f"msg-{failure.__name__}"
    envelope = _envelope(_body("with-consent"), message_id)
    with failure(database):
        response = _post(gw, envelope)
    fault = parse_fault(response.content)
    assert response.status_code == 500 and fault is not None
    assert "nothing was stored" in fault.string
    assert _counts(database) == before
    gw.flush_log()
    logged = [e for e in audit_entries(database, organization="kela") if message_id in _query(e)]
    assert [e["outcome"] for e in logged] == ["failure"]
    # Kela sends it again: processed in full.
    response = _post(gw, envelope)
    assert response.status_code == 200
    assert _response_field(response, "ReceiptStatus") == "accepted"
    assert _counts(database)[0] > before[0]


def test_a_repeat_gets_its_first_response_even_when_its_body_would_now_be_refused(
    gw: Gateway, database: Database
) -> None:
    envelope = _envelope(_body("with-consent"), "msg-before-the-register-changed")
    first = _post(gw, envelope)
    assert first.status_code == 200, first.text
    stored = _counts(database)
    # The wellbeing area stops listing the client's municipality: the body alone would
    # now be refused (no wellbeing area serves it), but the message id was answered before.
    with database.write() as conn:
        conn.execute(delete(organization_municipality))
    again = _post(gw, envelope)
    assert again.status_code == 200 and again.content == first.content
    assert _counts(database) == stored
    fresh = _post(gw, _envelope(_body("with-consent"), "msg-after-the-register-changed"))
    fault = parse_fault(fresh.content)
    assert fresh.status_code == 500 and fault is not None
    assert "no-wellbeing-area" in fault.string


def test_a_sender_that_cannot_be_looked_up_is_a_server_fault_not_a_stranger(
    gw: Gateway, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextmanager
    def unreachable() -> Iterator[Any]:
        raise OperationalError("SELECT", {}, Exception("connection refused"))
        yield

    monkeypatch.setattr(database, "read_raw", unreachable)
    response = _post(gw, _envelope(_body("with-consent"), "msg-database-down"))
    fault = parse_fault(response.content)
    assert response.status_code == 500 and fault is not None
    assert fault.code.endswith("Server") and "nothing was stored" in fault.string


def test_messages_that_reach_the_loop_together_are_read_and_mapped_as_one_batch(
    gw: Gateway, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    senders_looked_up: list[ClientId] = []

    def organization_of(raw: Any, client: ClientId) -> str | None:
        senders_looked_up.append(client)
        return members.organization_of(raw, client)

    monkeypatch.setattr(xroad_module, "organization_of", organization_of)

    def prepare(messages: Sequence[bytes]) -> list[Prepared]:
        batches.append(len(messages))
        return prepare_all(database, messages)

    stranger = ClientId("FI", "COM", "7654321-0", "other")
    messages = [
        _envelope(_body("with-consent"), "msg-batch-1"),
        b"not xml at all",
        _envelope(_body("with-consent"), "msg-batch-2", client=stranger),
        _envelope(_body("with-consent"), "msg-batch-3"),
    ]

    async def arrive_together() -> list[Prepared]:
        preparing = PreparedBatches(prepare)
        together = await asyncio.gather(*(preparing.prepare(m) for m in messages))
        alone = await preparing.prepare(messages[0])
        return [*together, alone]

    valid, not_xml, unknown, other, alone = asyncio.run(arrive_together())
    assert batches == [4, 1]
    # A batch looks up each X-Road client once.
    assert senders_looked_up == [KELA, stranger, KELA]
    # Where service calls run on threads, the batch runs on one, once.
    threads: list[int] = []

    async def offload(prepare_batch: Callable[[], list[Prepared]]) -> list[Prepared]:
        def run() -> list[Prepared]:
            threads.append(threading.get_ident())
            return prepare_batch()

        return await asyncio.to_thread(run)

    async def arrive_together_on_threads() -> list[Prepared]:
        preparing = PreparedBatches(prepare)
        return await asyncio.gather(*(preparing.prepare(m, offload=offload) for m in messages))

    on_threads = asyncio.run(arrive_together_on_threads())
    assert batches == [4, 1, 4] and len(threads) == 1 and threads[0] != threading.get_ident()
    assert [p.organization for p in on_threads] == ["kela", None, None, "kela"]
    assert valid.xroad is not None and valid.xroad.message_id == "msg-batch-1"
    assert valid.organization == "kela" and valid.mapped().wellbeing_area == "pirha"
    assert not_xml.xroad is None and b"not well-formed" in not_xml.fault
    assert unknown.xroad is not None and unknown.organization is None
    assert other.xroad is not None and other.xroad.message_id == "msg-batch-3"
    assert alone.mapped().hetu == valid.mapped().hetu
    # The first stage reads only: nothing was stored.
    template = RequestContext(
        db=database,
        settings=Settings(database_url=database.url),
        base_url="http://t/fhir",
        write_hooks=(task_changed,),
    )
    before = _counts(database)
    body, status = complete(template, valid)
    assert status == 200 and b"ReceiptStatus" in body
    assert _counts(database)[0] == before[0] + 4


def _query(entry: dict[str, Any]) -> str:
    record = entry["record"]
    detail = orjson.loads(record) if isinstance(record, str | bytes) else record
    return str(detail.get("query") or "")
