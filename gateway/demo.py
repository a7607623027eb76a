"""``silta demo``: the closed loop of the Kela exchange (issue 4) in one command.

On a fresh embedded database it registers Kela and two wellbeing areas with clients
holding in-memory keys, an active data-sharing agreement Kela → each area (Social
Welfare Act 1301/2014 §35), and Kela's X-Road member pointing at a loopback security
server (:mod:`adapters.xroad.loopback`). It then runs the gateway for real (uvicorn on
127.0.0.1 with the outbox dispatcher), sends a concern notification as Kela over SOAP,
works its Task as Pirkanmaa over FHIR (accepted → in-progress → completed), shows each
``NotificationFeedback`` that reached Kela, Kela's own view, and the client's
access-log extract, and shuts everything down.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import typer
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from lxml import etree
from rich.console import Console
from rich.table import Table
from sqlalchemy import inspect, literal_column, select, table

from adapters.xroad.envelope import CONTENT_TYPE, build_request, parse_request, parse_xml
from adapters.xroad.identifiers import ClientId, ServiceId
from adapters.xroad.loopback import LoopbackSecurityServer
from adapters.xroad.members import add_member
from adapters.xroad.outbound import GATEWAY_CLIENT_VARIABLE
from gateway.admin import agreements
from gateway.admin import organizations as orgs
from gateway.api.app import create_app
from gateway.auth.clients import register_client
from gateway.auth.scopes import ADMIN_SCOPE
from gateway.auth.tokens import JWT_BEARER_ASSERTION
from gateway.config import Settings
from gateway.services.context import RequestContext
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from mappings.municipalities import municipalities, municipalities_of_area

HOST = "127.0.0.1"
GATEWAY_XROAD_CLIENT = "FI/GOV/1234567-8/silta"
KELA_XROAD_CLIENT = ClientId("FI", "GOV", "0246246-0", "kela-silta")
PURPOSE = "concern-notification"
SHARED_TYPES = ("ServiceRequest", "Task", "Patient", "Consent")
BUSINESS_STATUS_SYSTEM = (
    "https://silta.example.org/fhir/CodeSystem/concern-notification-business-status"
)
NOTIFICATION_PATH = ("kela", "golden", "concern-notification", "with-consent.input.xml")
CLIENT_SCOPES = "system/*.cruds"
EXPECTED_FEEDBACK = 3
"""accepted, in-progress and completed: one NotificationFeedback per Task change."""
FEEDBACK_TIMEOUT_SECONDS = 20.0
SERVER_START_TIMEOUT_SECONDS = 30.0
CAPTURED_WIDTH = 120
"""Columns of the output when it goes to a file or pipe rather than a terminal."""
# An idle outbox dispatcher looks for due messages this often (unless set otherwise).
DEMO_OUTBOX_POLL_SECONDS = "0.1"


class DemoFailed(Exception):
    """A step of the demo did not get the answer it needs to go on."""


@dataclass(frozen=True, slots=True)
class Party:
    """One organisation of the demo and its registration."""

    id: str
    name: str
    type: str
    business_id: str
    area_code: str | None = None

    def organization(self) -> orgs.Organization:
        municipalities = municipalities_of_area(self.area_code) if self.area_code else []
        return orgs.Organization(
            self.id,
            self.name,
            self.type,
            (orgs.Identifier(orgs.BUSINESS_ID_SYSTEM, self.business_id),),
            municipalities=tuple(municipalities),
        )


def business_id(body: str) -> str:
    """A Y-tunnus ``NNNNNNN-C`` with its check digit computed for the 7-digit ``body``."""
    check = orgs.business_id_check_digit(body)
    if check is None:
        raise ValueError(f"{body} has no valid Y-tunnus check digit")
    return f"{body}-{check}"


KELA = Party("kela", "Kansaneläkelaitos", "kela", "0246246-0")
PIRHA = Party("pirha", "Pirkanmaan hyvinvointialue", "wellbeing-area", "3221308-6", "08")
VARHA = Party(
    "varha", "Varsinais-Suomen hyvinvointialue", "wellbeing-area", business_id("3221316"), "05"
)
PARTIES = (KELA, PIRHA, VARHA)


@dataclass
class DemoClient:
    """A registered backend-services client with an in-memory EC P-384 key; it fetches
    its access token with a ``private_key_jwt`` assertion (RFC 7523, SMART Backend
    Services) from the running gateway."""

    client_id: str
    organization_id: str
    scopes: str
    is_admin: bool = False
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    _token: str | None = field(default=None, init=False, repr=False)

    def jwks(self) -> dict[str, Any]:
        jwk = dict(ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True))
        jwk.update({"kid": self.client_id, "alg": "ES384", "use": "sig"})
        return {"keys": [jwk]}

    def token(self, http: httpx.Client, root: str) -> str:
        if self._token is None:
            token_url = f"{root}/auth/token"
            claims = {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": token_url,
                "exp": int(time.time()) + 240,
                "jti": uuid.uuid4().hex,
            }
            assertion = jwt.encode(
                claims, self.key, algorithm="ES384", headers={"kid": self.client_id}
            )
            response = http.post(
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": self.scopes,
                    "client_assertion_type": JWT_BEARER_ASSERTION,
                    "client_assertion": assertion,
                },
            )
            _expect(response, 200, f"token of {self.client_id}")
            self._token = str(response.json()["access_token"])
        return self._token

    def headers(self, http: httpx.Client, root: str, purpose: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token(http, root)}"}
        if purpose is not None:
            headers["X-Purpose-Of-Use"] = purpose
        return headers


def _time_of_day(instant: str) -> str:
    """``HH:MM:SS.fff`` of an instant ``YYYY-MM-DDTHH:MM:SS.fffZ``."""
    return instant[11:23] if len(instant) >= 23 else instant


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise DemoFailed(f"{what}: HTTP {response.status_code}: {response.text[:500]}")


# -- set-up ----------------------------------------------------------------------


def _database_url(database: str | None, stack: ExitStack) -> str:
    """``database`` (an SQLAlchemy URL, or a file path for SQLite), or a new SQLite
    file in a temporary directory removed at the end."""
    if database is None:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="silta-demo-"))
        return f"sqlite:///{Path(workdir) / 'silta-demo.db'}"
    if "://" in database:
        return database
    return f"sqlite:///{Path(database).resolve()}"


def _holds_data(db: Database) -> bool:
    """Whether any table but Alembic's has a row (a migrated empty database has none)."""
    names = [n for n in inspect(db.engine).get_table_names() if n != "alembic_version"]
    with db.read() as conn:
        return any(
            conn.execute(select(literal_column("1")).select_from(table(n)).limit(1)).first()
            for n in names
        )


def _register(db: Database, kela_security_server: str) -> dict[str, DemoClient]:
    """Organisations, clients, agreements and Kela's X-Road member, on the database."""
    settings = Settings(database_url=db.url)
    ctx = RequestContext(db=db, settings=settings, base_url=f"http://{HOST}/fhir")
    for party in PARTIES:
        orgs.create_organization(ctx, org=party.organization())
    clients = {
        party.id: DemoClient(f"{party.id}-demo", party.id, CLIENT_SCOPES) for party in PARTIES
    }
    clients["admin"] = DemoClient("kela-demo-admin", KELA.id, ADMIN_SCOPE, is_admin=True)
    for client in clients.values():
        register_client(
            db,
            client_id=client.client_id,
            organization_id=client.organization_id,
            jwks=client.jwks(),
            scopes=client.scopes,
            is_admin=client.is_admin,
        )
    for area in (PIRHA, VARHA):
        terms = agreements.AgreementTerms(
            provider=KELA.id,
            recipient=area.id,
            categories=tuple(agreements.Category(t) for t in SHARED_TYPES),
            purposes=(PURPOSE,),
            legal_basis=agreements.LegalBasis(
                "1301/2014 §35", "Notification of need for social services"
            ),
            consent_required=False,
            write_allowed=True,
            valid_from=date.today() - timedelta(days=1),
        )
        agreement = agreements.create_agreement(db, terms=terms, actor="silta-demo")
        for approver in (KELA.id, area.id):
            agreements.approve(db, agreement.id, as_org=approver, actor="silta-demo")
    with db.write() as conn:
        add_member(
            conn,
            client=KELA_XROAD_CLIENT,
            organization_id=KELA.id,
            security_server_url=kela_security_server,
        )
    return clients


@contextmanager
def _environment(defaults: Mapping[str, str]) -> Iterator[None]:
    """Sets the variables the user has not set, and restores the environment after."""
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def _serve(db: Database, port: int) -> Iterator[int]:
    """The gateway under uvicorn in a background thread; yields the port it listens on."""
    settings = Settings(database_url=db.url, auth_required=True, outbox_dispatcher=True)
    app = create_app(settings, database=db, migrate=False)
    config = uvicorn.Config(
        app, host=HOST, port=port, log_config=None, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="silta-demo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise DemoFailed(f"the gateway did not start on {HOST}:{port}")
        time.sleep(0.02)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(SERVER_START_TIMEOUT_SECONDS)


# -- the loop --------------------------------------------------------------------


@dataclass
class DemoSession:
    """The running demo: the gateway at ``root``, its clients and Kela's endpoint."""

    console: Console
    http: httpx.Client
    root: str
    clients: dict[str, DemoClient]
    kela_endpoint: LoopbackSecurityServer
    step: int = 0

    def heading(self, title: str, explanation: str) -> None:
        self.step += 1
        self.console.rule(f"[bold cyan]{self.step}. {title}", align="left")
        self.console.print(explanation, style="dim")

    def headers(self, org: str, purpose: str | None = None) -> dict[str, str]:
        return self.clients[org].headers(self.http, self.root, purpose)

    def send_notification(self) -> tuple[str, str]:
        """Kela's ConcernNotification over X-Road; returns (ServiceRequest id, HETU)."""
        self.heading(
            "Kela sends a concern notification over X-Road",
            "A SOAP request (X-Road message protocol 4.0) from Kela's subsystem "
            f"{KELA_XROAD_CLIENT} to POST /exchange/xroad: parsed, XSD-validated, mapped to "
            "FHIR and stored as Kela's data in one transaction.",
        )
        data = resources.files("mappings").joinpath(*NOTIFICATION_PATH).read_bytes()
        body = parse_xml(data)
        service = ServiceId(
            ClientId.parse(os.environ[GATEWAY_CLIENT_VARIABLE]), etree.QName(body).localname
        )
        envelope = build_request(
            client=KELA_XROAD_CLIENT,
            service=service,
            message_id=f"demo-{uuid.uuid4()}",
            body=body,
        )
        response = self.http.post(
            f"{self.root}/exchange/xroad",
            content=envelope,
            headers={"Content-Type": CONTENT_TYPE},
        )
        _expect(response, 200, "the concern notification")
        answer = parse_xml(response.content)
        found = {
            name: answer.findtext(f".//{{*}}{name}")
            for name in ("NotificationId", "ReceiptStatus", "ServiceRequestId")
        }
        hetu = body.findtext(".//{*}Hetu") or ""
        municipality = body.findtext(".//{*}MunicipalityCode") or ""
        shown = municipalities().get(municipality)
        facts = Table(show_header=False, box=None, padding=(0, 2))
        facts.add_row("client (test HETU)", hetu)
        if shown is not None:
            facts.add_row("municipality", f"{municipality} {shown.name_fi} → {shown.area_name}")
        facts.add_row("HTTP status", str(response.status_code))
        for name, value in found.items():
            facts.add_row(name, value or "-")
        self.console.print(facts)
        service_request = found["ServiceRequestId"]
        if not service_request:
            raise DemoFailed("the response names no ServiceRequestId")
        return service_request, hetu

    def work_task(self, service_request: str) -> str:
        """Pirkanmaa finds the Task and works it; returns the Task id."""
        self.heading(
            "Pirkanmaa works the Task over FHIR",
            f"As client {self.clients[PIRHA.id].client_id} (bearer token, X-Purpose-Of-Use: "
            f"{PURPOSE}) through the agreement Kela → Pirkanmaa: each change of the Task "
            "queues a NotificationFeedback to Kela in the same transaction.",
        )
        headers = self.headers(PIRHA.id, PURPOSE)
        response = self.http.get(
            f"{self.root}/fhir/Task",
            params={"focus": f"ServiceRequest/{service_request}", "owner": "Organization/pirha"},
            headers=headers,
        )
        _expect(response, 200, "the Task search")
        entries = response.json().get("entry") or []
        if not entries:
            raise DemoFailed(f"no Task for ServiceRequest/{service_request} is visible")
        task: dict[str, Any] = entries[0]["resource"]
        changes = Table("Task change", "HTTP", "version", "businessStatus")
        self.console.print(f"found Task/{task['id']} (status {task['status']})")
        steps: list[tuple[str, str | None]] = [
            ("accepted", None),
            ("in-progress", "client-contacted"),
            ("completed", None),
        ]
        for status, business_status in steps:
            task["status"] = status
            if business_status is not None:
                task["businessStatus"] = {
                    "coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": business_status}]
                }
            response = self.http.put(
                f"{self.root}/fhir/Task/{task['id']}", json=task, headers=headers
            )
            _expect(response, 200, f"setting the Task {status}")
            task = response.json()
            version = str(task.get("meta", {}).get("versionId", "?"))
            changes.add_row(
                f"→ {status}", str(response.status_code), version, business_status or ""
            )
        self.console.print(changes)
        return str(task["id"])

    def show_feedback(self) -> list[dict[str, str]]:
        """What reached Kela's security server, in order of arrival."""
        self.heading(
            "The feedback reaches Kela",
            "The outbox dispatcher delivers each queued NotificationFeedback to Kela's "
            f"security server (here a loopback endpoint at {self.kela_endpoint.url}).",
        )
        arrived = self.kela_endpoint.wait_for_deliveries(
            EXPECTED_FEEDBACK, FEEDBACK_TIMEOUT_SECONDS
        )
        received: list[dict[str, str]] = []
        shown = Table("#", "X-Road service", "Status", "BusinessStatus", "MessageId")
        for request in self.kela_endpoint.requests:
            if not request.delivered:
                continue
            message = parse_request(request.body)
            fields = {
                name: message.body.findtext(f"{{*}}{name}") or ""
                for name in ("Status", "BusinessStatus", "MessageId")
            }
            received.append(fields)
            shown.add_row(
                str(len(received)),
                message.service_code,
                fields["Status"],
                fields["BusinessStatus"] or "-",
                fields["MessageId"],
            )
        self.console.print(shown)
        if not arrived:
            raise DemoFailed(
                f"{len(received)} of {EXPECTED_FEEDBACK} feedback messages reached Kela "
                f"within {FEEDBACK_TIMEOUT_SECONDS:g} s"
            )
        return received

    def show_kela_view(self, service_request: str, task_id: str) -> None:
        self.heading(
            "What Kela sees",
            "Kela stays the custodian of what it sent: it reads the notification and "
            "follows the Task's history, status by status.",
        )
        headers = self.headers(KELA.id)
        response = self.http.get(
            f"{self.root}/fhir/ServiceRequest/{service_request}", headers=headers
        )
        _expect(response, 200, "Kela reading its ServiceRequest")
        request = response.json()
        performer = ", ".join(p.get("reference", "") for p in request.get("performer", []))
        self.console.print(
            f"ServiceRequest/{service_request}: status {request.get('status')}, "
            f"priority {request.get('priority', '-')}, performer {performer}"
        )
        response = self.http.get(f"{self.root}/fhir/Task/{task_id}/_history", headers=headers)
        _expect(response, 200, "Kela reading the Task's history")
        history = Table("version", "status", "businessStatus", "last updated")
        for entry in reversed(response.json().get("entry") or []):
            task = entry.get("resource") or {}
            codes = (task.get("businessStatus") or {}).get("coding") or [{}]
            history.add_row(
                str(task.get("meta", {}).get("versionId", "")),
                str(task.get("status", "")),
                str(codes[0].get("code", "-")),
                str(task.get("meta", {}).get("lastUpdated", "")),
            )
        self.console.print(history)

    def show_access_log(self, hetu: str) -> None:
        self.heading(
            "The client's access-log extract",
            f"GET /admin/api/audit/client/{hetu} with an admin token: who used or received "
            "the client's data, when, for what purpose and on which agreement.",
        )
        response = self.http.get(
            f"{self.root}/admin/api/audit/client/{hetu}", headers=self.headers("admin")
        )
        _expect(response, 200, "the access-log extract")
        extract = response.json()
        accesses = Table("time (UTC)", "organisation", "client", "purpose", "action", "outcome")
        for access in reversed(extract["accesses"]):
            accesses.add_row(
                _time_of_day(access["at"]),
                str(access["organization"] or ""),
                str(access["client"] or ""),
                str(access["purpose"] or ""),
                str(access["action"]),
                str(access["outcome"]),
            )
        disclosures = Table("time (UTC)", "from", "to", "purpose", "agreement", "legal basis")
        for disclosure in reversed(extract["disclosures"]):
            disclosures.add_row(
                _time_of_day(disclosure["at"]),
                str(disclosure["provider"]),
                str(disclosure["recipient"]),
                str(disclosure["purpose"] or ""),
                str(disclosure["agreement"] or "")[:8],
                str(disclosure["legal_basis"] or ""),
            )
        self.console.print(_count(len(extract["accesses"]), "access", "accesses"), style="bold")
        self.console.print(accesses)
        self.console.print(
            _count(len(extract["disclosures"]), "disclosure", "disclosures"), style="bold"
        )
        self.console.print(disclosures)


def demo(
    database: Annotated[
        str | None,
        typer.Option(
            help="An empty database to keep afterwards (SQLAlchemy URL or SQLite file path); "
            "default: a new SQLite file in a temporary directory, removed at the end"
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="TCP port of the gateway; 0 picks a free one")] = 0,
) -> None:
    """Shows the Kela exchange's closed loop: a concern notification in over X-Road, the
    wellbeing area working its Task, the feedback out to Kela."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = CAPTURED_WIDTH
    with ExitStack() as stack:
        url = _database_url(database, stack)
        db = Database(url)
        stack.callback(db.dispose)
        if _holds_data(db):
            console.print(f"[red]{url} already holds data; the demo needs an empty database.")
            raise typer.Exit(1)
        try:
            _run(console, stack, db, port)
        except DemoFailed as failure:
            console.print(f"[bold red]The demo stopped: {failure}")
            raise typer.Exit(1) from None
    if database is not None:
        console.print(f"The demo's data stays in {url}.", style="dim")
    else:
        console.print("The temporary database has been removed.", style="dim")


def _run(console: Console, stack: ExitStack, db: Database, port: int) -> None:
    console.print("[bold]Silta demo[/]: Kela ⇄ wellbeing area over X-Road and FHIR", "\n")
    console.rule("[bold cyan]0. Set-up", align="left")
    upgrade(db.engine)
    kela_endpoint = stack.enter_context(LoopbackSecurityServer())
    clients = _register(db, kela_endpoint.url)
    setup = Table("id", "organisation", "Y-tunnus", "municipalities", "client")
    for party in PARTIES:
        served = party.organization().municipalities
        setup.add_row(
            party.id,
            party.name,
            party.business_id,
            str(len(served)) if served else "-",
            clients[party.id].client_id,
        )
    console.print(f"database {db.url}, schema migrated")
    console.print(setup)
    console.print(
        f"agreements Kela → pirha and Kela → varha: {', '.join(SHARED_TYPES)} for {PURPOSE}, "
        f"write allowed; admin client {clients['admin'].client_id}"
    )
    console.print(f"Kela's X-Road member {KELA_XROAD_CLIENT} → {kela_endpoint.url}")
    stack.enter_context(
        _environment(
            {
                GATEWAY_CLIENT_VARIABLE: GATEWAY_XROAD_CLIENT,
                "SILTA_OUTBOX_POLL_SECONDS": DEMO_OUTBOX_POLL_SECONDS,
            }
        )
    )
    listening = stack.enter_context(_serve(db, port))
    root = f"http://{HOST}:{listening}"
    console.print(
        f"gateway at {root} (FHIR {root}/fhir, X-Road {root}/exchange/xroad) as X-Road client "
        f"{os.environ[GATEWAY_CLIENT_VARIABLE]}, outbox dispatcher on"
    )
    http = stack.enter_context(httpx.Client(timeout=30.0))
    session = DemoSession(console, http, root, clients, kela_endpoint)
    service_request, hetu = session.send_notification()
    task_id = session.work_task(service_request)
    session.show_feedback()
    session.show_kela_view(service_request, task_id)
    session.show_access_log(hetu)
    console.rule("[bold green]Done", align="left")
    console.print("Shutting down the gateway and Kela's loopback security server.", style="dim")
