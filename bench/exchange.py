"""End-to-end ConcernNotifications per second over X-Road: ``python -m bench.exchange --help``.

Issue 4 sets the goal of 500 notifications per second on one worker process, each
parsed, XSD-validated, mapped to FHIR, stored and answered. For each backend this makes
a fresh database, registers Kela, the wellbeing areas that serve the municipalities used
and Kela's X-Road member directly on it, stores ``--preload`` notifications in process,
runs ANALYZE on PostgreSQL after the first hundred of them and again after the rest (as
``bench.run`` does after its load: autovacuum may be off on a development server, and
without planner statistics the lookup of the client's Patient by HETU scans every stored
Patient, so each notification costs more than the one before), measures the in-process
cost of each phase of one message, then starts ``silta serve --workers 1``
(``SILTA_AUTH=on``, outbox dispatcher off) and posts distinct SOAP requests to ``POST
/exchange/xroad`` at each concurrency for a fixed time. A response counts as done only
when it is HTTP 200 and carries a ``ReceiptStatus``. Prints a table and writes it to
``bench/results/exchange-<timestamp>.md``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock

from lxml import etree
from sqlalchemy import func, select

import bench.client as load_client
from adapters.kela.inbound import check_body, map_inbound
from adapters.kela.mapping import mappings
from adapters.xroad.envelope import build_request, parse_request
from adapters.xroad.identifiers import ClientId, ServiceId
from adapters.xroad.members import add_member
from adapters.xroad.outbound import GATEWAY_CLIENT_VARIABLE
from adapters.xroad.schema import inbound as xroad_inbound
from bench.calibrate import MachineSpeed, machine_speed
from bench.client import Connection, Request, Stats, measure, new_event_loop
from bench.data import HetuSequence
from bench.run import (
    HOST,
    RESULTS_DIR,
    ROOT,
    Server,
    _analyze_postgresql,
    _free_port,
    _fresh_database,
    add_postgresql_options,
    environment_lines,
    local_postgresql_cpu,
)
from bench.run import _silta_command as silta_command
from gateway.admin import organizations as orgs
from gateway.audit.log import AuditLog
from gateway.config import Settings
from gateway.exchange.directory import RegisterDirectory
from gateway.exchange.loop import task_changed
from gateway.exchange.xroad import exchange
from gateway.services.context import RequestContext
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from mappings.municipalities import municipalities_of_area

SERVICE = "ConcernNotification"
EXCHANGE_PATH = "/exchange/xroad"
GATEWAY_XROAD_CLIENT = "FI/GOV/1234567-8/silta"
KELA_XROAD_CLIENT = ClientId("FI", "GOV", "0246246-0", "kela-silta")
# Kela's security server: never called, since the outbox dispatcher is off and no Task
# changes after it is created.
KELA_SECURITY_SERVER = "http://127.0.0.1:9/"
TEMPLATE = ("kela", "golden", "concern-notification", "with-consent.input.xml")
NO_RECEIPT = 0
"""Status recorded for an HTTP 200 without ReceiptStatus (counted as an error)."""
SPLIT_WARMUP = 20
"""Messages processed before the in-process phases are timed (caches, first imports)."""
PRELOAD_BEFORE_ANALYZE = 100
"""On PostgreSQL this many notifications are stored before a first ANALYZE, the rest
after it (the planner needs statistics to find a client's Patient by its index)."""


@dataclass(frozen=True, slots=True)
class Area:
    """A wellbeing area (or the City of Helsinki) registered for the benchmark."""

    id: str
    name: str
    area_code: str


AREAS = (
    Area("pirha", "Pirkanmaan hyvinvointialue", "08"),
    Area("varha", "Varsinais-Suomen hyvinvointialue", "05"),
    Area("helsinki", "Helsingin kaupunki", "90"),
)


def municipality_code(n: int) -> str:
    """The municipality of the ``n``-th message: the areas take turns, and each area's
    municipalities take turns within it."""
    area = AREAS[n % len(AREAS)]
    codes = municipalities_of_area(area.area_code)
    return codes[(n // len(AREAS)) % len(codes)]


def register(database_url: str) -> None:
    """Kela, the areas and Kela's X-Road member, straight on the migrated database."""
    db = Database(database_url)
    try:
        upgrade(db.engine)
        ctx = RequestContext(
            db=db, settings=Settings(database_url=database_url), base_url="http://bench/fhir"
        )
        kela_id = orgs.Identifier(orgs.BUSINESS_ID_SYSTEM, "0246246-0")
        orgs.create_organization(ctx, org=orgs.Organization("kela", "Kela", "kela", (kela_id,)))
        for area in AREAS:
            served = tuple(municipalities_of_area(area.area_code))
            organization = orgs.Organization(
                area.id, area.name, "wellbeing-area", municipalities=served
            )
            orgs.create_organization(ctx, org=organization)
        with db.write() as conn:
            add_member(
                conn,
                client=KELA_XROAD_CLIENT,
                organization_id="kela",
                security_server_url=KELA_SECURITY_SERVER,
            )
    finally:
        db.dispose()


class Notifications:
    """Distinct ConcernNotifications from the golden message, each in its own SOAP
    envelope: a unique NotificationId and X-Road message id, a unique test HETU, and
    the municipalities of the registered areas in turn."""

    def __init__(self, run: str) -> None:
        data = resources.files("mappings").joinpath(*TEMPLATE).read_bytes()
        self._body = etree.fromstring(data)
        self._notification_id = self._body.find("{*}NotificationId")
        self._hetu = self._body.find(".//{*}Hetu")
        self._municipality = self._body.find(".//{*}MunicipalityCode")
        self._service = ServiceId(ClientId.parse(GATEWAY_XROAD_CLIENT), SERVICE)
        self._hetus = HetuSequence()
        self._run = run
        self.made = 0

    def next(self) -> bytes:
        n = self.made
        self.made += 1
        self._notification_id.text = f"KELA-SHL35-BENCH-{self._run}-{n:08d}"
        self._hetu.text = self._hetus.next()[0]
        self._municipality.text = municipality_code(n)
        message: bytes = build_request(
            client=KELA_XROAD_CLIENT,
            service=self._service,
            message_id=f"bench-{self._run}-{n:08d}",
            body=self._body,
        )
        return message


class ReceiptConnection(Connection):
    """A load-client connection that reports an HTTP 200 without ``ReceiptStatus`` in
    the SOAP body as status :data:`NO_RECEIPT`, so it counts as an error."""

    receipts = 0
    """Responses with a ReceiptStatus, warm-up included (checked against the database)."""

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        status, payload = await super().request(method, path, body)
        if status == 200:
            if b"ReceiptStatus>" not in payload:
                return NO_RECEIPT, payload
            ReceiptConnection.receipts += 1
        return status, payload


def receipts_checked() -> AbstractContextManager[Any]:
    """``bench.client.measure`` opens its connections as ``bench.client.Connection``;
    inside this block that name is :class:`ReceiptConnection`."""
    return mock.patch.object(load_client, "Connection", ReceiptConnection)


# -- the in-process cost of one message ------------------------------------------


@dataclass
class Split:
    """Per-message times of each phase, in microseconds."""

    backend: str
    messages: int = 0
    phases: dict[str, list[float]] = field(default_factory=dict)

    def add(self, phase: str, seconds: float) -> None:
        self.phases.setdefault(phase, []).append(seconds * 1e6)

    def rows(self) -> list[list[str]]:
        total = statistics.fmean(self.phases[TOTAL_PHASE])
        rows = []
        for phase, values in self.phases.items():
            mean = statistics.fmean(values)
            rows.append(
                [
                    self.backend,
                    phase,
                    f"{mean:.0f}",
                    f"{statistics.median(values):.0f}",
                    f"{100 * mean / total:.0f} %",
                ]
            )
        return rows


SPLIT_HEADERS = ["backend", "phase", "mean µs", "median µs", "share"]
TOTAL_PHASE = "total in process"
STORE_PHASE = (
    "store and respond (member lookup, idempotency, in-hand search, transaction, response record)"
)


def _exchange_template(db: Database) -> RequestContext:
    """What the X-Road endpoint hands :func:`gateway.exchange.xroad.exchange`."""
    return RequestContext(
        db=db,
        settings=Settings(database_url=db.url),
        base_url="http://bench/fhir",
        write_hooks=(task_changed,),
    )


def _exchanged(template: RequestContext, envelope: bytes, audit: AuditLog) -> None:
    response, status = exchange(template, envelope, audit=audit)
    if status != 200 or b"ReceiptStatus>" not in response:
        raise RuntimeError(f"in-process exchange failed: {response[:500]!r}")


def preload(database_url: str, messages: Notifications, count: int) -> None:
    """Stores ``count`` notifications in process, untimed, so that measurements do not
    start on an empty store (and PostgreSQL's planner has rows to gather statistics on)."""
    db = Database(database_url)
    audit = AuditLog(db)
    try:
        template = _exchange_template(db)
        for _ in range(count):
            _exchanged(template, messages.next(), audit)
        audit.flush()
    finally:
        db.dispose()


def cost_split(backend: str, database_url: str, messages: Notifications, count: int) -> Split:
    """Times parse, XSD validation and mapping of ``count`` messages on their own, and
    the whole :func:`gateway.exchange.xroad.exchange` of each; storing is the rest.
    The access log is appended in one batch at the end, as the server's background
    thread does, and its cost divided over the messages."""
    db = Database(database_url)
    split = Split(backend)
    template = _exchange_template(db)
    mapping = mappings("inbound")[SERVICE]
    audit = AuditLog(db)
    clock = time.perf_counter
    totals: list[float] = []
    try:
        for n in range(SPLIT_WARMUP + count):
            envelope = messages.next()
            with db.read() as conn:
                directory = RegisterDirectory(conn)
                started = clock()
                request = parse_request(envelope)
                parsed = clock()
                check_body(mapping, request.body)
                validated = clock()
                map_inbound(SERVICE, request.body, directory, sender="kela")
                mapped = clock()
            _exchanged(template, envelope, audit)
            done = clock()
            if n < SPLIT_WARMUP:
                audit.flush()
                continue
            parse, validate, map_inbound_total = (
                parsed - started,
                validated - parsed,
                mapped - validated,
            )
            # exchange() parses, then validates and maps (map_inbound), then stores.
            mapping_only = map_inbound_total - validate
            store = (done - mapped) - parse - map_inbound_total
            split.add("parse SOAP envelope (lxml, hardened)", parse)
            split.add("XSD-validate body (libxml2)", validate)
            split.add("map to a FHIR transaction Bundle (with the directory lookup)", mapping_only)
            split.add(STORE_PHASE, store)
            totals.append(done - mapped)
        appended = clock()
        audit.flush()
        log_share = (clock() - appended) / count
        split.add("access-log append (batched, per message)", log_share)
        for total in totals:
            split.add(TOTAL_PHASE, total + log_share)
        split.messages = count
    finally:
        db.dispose()
    return split


# -- over HTTP -------------------------------------------------------------------


@dataclass
class Row:
    """One measurement: a backend at one concurrency."""

    backend: str
    concurrency: int
    stats: Stats

    def cells(self) -> list[str]:
        errors = str(self.stats.errors)
        if self.stats.errors:
            kinds = ", ".join(
                f"{'no ReceiptStatus' if k == str(NO_RECEIPT) else k}: {n}"
                for k, n in self.stats.statuses.most_common()
            )
            errors += f" ({kinds})"
        load = self.stats.load_average
        return [
            self.backend,
            str(self.concurrency),
            f"{self.stats.rate:.1f}",
            _ms(self.stats.percentile_ms(50)),
            _ms(self.stats.percentile_ms(95)),
            _ms(self.stats.cpu_ms_per_request(self.stats.server_cpu)),
            _ms(self.stats.cpu_ms_per_request(self.stats.loop_cpu)),
            _ms(self.stats.cpu_ms_per_request(self.stats.database_cpu)),
            _ms(self.stats.cpu_ms_per_request(self.stats.client_cpu)),
            "-" if load is None else f"{load:.1f}",
            errors,
        ]


HEADERS = [
    "backend",
    "conc",
    "msgs/s",
    "p50 ms",
    "p95 ms",
    "srv cpu ms/msg",
    "loop cpu ms/msg",
    "db cpu ms/msg",
    "cli cpu ms/msg",
    "load1",
    "errors",
]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@dataclass
class BackendReport:
    backend: str
    split: Split | None = None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    server_error_lines: list[str] = field(default_factory=list)


def _stored_responses(database_url: str) -> int:
    db = Database(database_url)
    try:
        with db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(xroad_inbound)).scalar_one())
    finally:
        db.dispose()


def _maker(messages: Notifications, count: int, report: BackendReport) -> Callable[[], Request]:
    """Requests from ``count`` envelopes made in advance, then from ones made on demand."""
    prepared = iter([messages.next() for _ in range(count)])
    on_demand = 0

    def make() -> Request:
        nonlocal on_demand
        envelope = next(prepared, None)
        if envelope is None:
            if on_demand == 0:
                report.notes.append(
                    f"{count} prepared messages ran out; the rest were made during the "
                    "measurement (in the client's CPU time)"
                )
            on_demand += 1
            envelope = messages.next()
        return "POST", EXCHANGE_PATH, envelope

    return make


async def run_backend(backend: str, args: argparse.Namespace) -> BackendReport:
    """Fresh database, registrations, the in-process split, then the server and load."""
    report = BackendReport(backend)
    workdir = Path(tempfile.mkdtemp(prefix=f"silta-bench-exchange-{backend}-"))
    url = _fresh_database(backend, workdir, args)
    register(url)
    messages = Notifications(datetime.now(UTC).strftime("%H%M%S"))
    if args.preload > 0:
        _say(f"[{backend}] storing {args.preload} notifications in process ...")
        first = args.preload
        if backend == "postgresql" and not args.no_analyze:
            first = min(args.preload, PRELOAD_BEFORE_ANALYZE)
        preload(url, messages, first)
        if first < args.preload:
            # Without statistics each Patient lookup by HETU scans every stored Patient.
            _analyze_postgresql(args)
            preload(url, messages, args.preload - first)
    if backend == "postgresql":
        report.notes.extend(_analyze_postgresql(args))
    if args.split_count > 0:
        _say(f"[{backend}] in-process cost of {args.split_count} messages ...")
        report.split = cost_split(backend, url, messages, args.split_count)
    port = _free_port()
    command = [silta_command(), "serve", "--host", HOST, "--port", str(port)]
    command += ["--database", url, "--workers", "1"]
    env = {
        "SILTA_AUTH": "on",
        "SILTA_OUTBOX_DISPATCHER": "0",
        GATEWAY_CLIENT_VARIABLE: GATEWAY_XROAD_CLIENT,
    }
    server = Server(command, port, workdir / "server.log", env)
    ReceiptConnection.receipts = 0
    try:
        await server.wait_ready("/fhir/metadata")
        report.notes.append(f"server memory allocator: {server.allocator()}")
        for concurrency in args.concurrency:
            make = _maker(messages, args.count, report)
            with receipts_checked():
                stats = await measure(
                    HOST,
                    port,
                    make,
                    concurrency=concurrency,
                    duration=args.duration,
                    warmup=args.warmup,
                    server_cpu=server.cpu_seconds,
                    loop_cpu=server.loop_cpu_seconds,
                    database_cpu=local_postgresql_cpu(args) if backend == "postgresql" else None,
                )
            row = Row(backend, concurrency, stats)
            report.rows.append(row)
            _say("  " + " | ".join(row.cells()))
            if stats.first_error:
                report.notes.append(f"c={concurrency} first error: {stats.first_error}")
    finally:
        server.stop()
        report.server_error_lines = server.error_lines()
    in_process = args.preload + (SPLIT_WARMUP + args.split_count if report.split else 0)
    stored = _stored_responses(url) - in_process
    report.notes.append(
        f"responses with ReceiptStatus (warm-up included): {ReceiptConnection.receipts}; "
        f"X-Road responses recorded in the database by the server: {stored}"
    )
    if args.keep:
        _say(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


# -- output ----------------------------------------------------------------------


def format_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    """An aligned text table, or a Markdown one."""
    cells = [headers, *rows]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "|".join("---" for _ in headers) + "|")
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    out = []
    for n, c in enumerate(cells):
        out.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _split_rows(reports: list[BackendReport]) -> list[list[str]]:
    return [row for rep in reports if rep.split is not None for row in rep.split.rows()]


def summary(reports: list[BackendReport], args: argparse.Namespace, speed: MachineSpeed) -> str:
    """The Markdown report of the whole run."""
    lines = [
        f"# Silta exchange benchmark {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        *environment_lines(speed),
        "- server: `silta serve --workers 1` with SILTA_AUTH=on, SILTA_OUTBOX_DISPATCHER=0; "
        "client: asyncio keep-alive connections in one process (bench/client.py); "
        f"{args.duration:g} s per measurement after {args.warmup:g} s warm-up",
        "- each request: a distinct ConcernNotification (golden with-consent message, unique "
        "NotificationId, test HETU and X-Road message id, municipalities of three areas in "
        f"turn) to `POST {EXCHANGE_PATH}`",
        f"- before measuring: {args.preload} notifications stored in process, then ANALYZE on "
        "PostgreSQL (see the notes)",
        "- msgs/s counts responses with HTTP 200 and a ReceiptStatus; p50/p95 are over those",
        "",
        "## Over HTTP",
        "",
        format_table(HEADERS, [r.cells() for rep in reports for r in rep.rows], markdown=True),
        "",
    ]
    split_rows = _split_rows(reports)
    if split_rows:
        lines += [
            "## Where the time of one message goes (in process)",
            "",
            f"{args.split_count} messages per backend after {SPLIT_WARMUP} untimed, "
            "`time.perf_counter` around each phase; parse, validation and mapping are timed "
            "on their own, the whole `gateway.exchange.xroad.exchange` as the total; storing "
            "is the total less parse, validation and mapping. What the server spends beyond "
            "the in-process total per message is HTTP, ASGI and the event loop.",
            "",
            format_table(SPLIT_HEADERS, split_rows, markdown=True),
            "",
        ]
    lines += ["## Notes", ""]
    for rep in reports:
        lines.extend(f"- {rep.backend}: {note}" for note in rep.notes)
        lines.append(f"- {rep.backend}: server log error lines: {len(rep.server_error_lines)}")
        lines.extend(f"  - `{line.strip()[:200]}`" for line in rep.server_error_lines[:10])
    return "\n".join(lines)


def _say(text: str) -> None:
    print(text, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.exchange", description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--count",
        type=int,
        default=10_000,
        help="messages made in advance for each measurement (more are made on demand)",
    )
    parser.add_argument("--concurrency", default="1,16", help="comma-separated connection counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument(
        "--split-count",
        type=int,
        default=300,
        help="messages timed in process for the cost split (0: no split)",
    )
    parser.add_argument(
        "--preload",
        type=int,
        default=200,
        help="notifications stored in process before anything is measured",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and server log")
    add_postgresql_options(parser, database="silta_bench_exchange")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.count < 1:
        parser.error("--count must be at least 1")
    return args


async def _main(args: argparse.Namespace) -> list[BackendReport]:
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    return [await run_backend(backend, args) for backend in backends]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    speed = machine_speed()
    _say(speed.describe())
    loop = new_event_loop()
    try:
        reports = loop.run_until_complete(_main(args))
    finally:
        loop.close()
    _say("")
    _say(format_table(HEADERS, [r.cells() for rep in reports for r in rep.rows], markdown=False))
    split_rows = _split_rows(reports)
    if split_rows:
        _say("")
        _say("in-process cost of one message:")
        _say(format_table(SPLIT_HEADERS, split_rows, markdown=False))
    for rep in reports:
        for note in rep.notes:
            _say(f"{rep.backend}: {note}")
        _say(f"{rep.backend}: server log error lines: {len(rep.server_error_lines)}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"exchange-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.md"
    path.write_text(summary(reports, args, speed) + "\n", encoding="utf-8")
    _say(f"written {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
