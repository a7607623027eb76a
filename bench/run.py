"""Benchmark of the Silta FHIR gateway: ``python -m bench.run --help``.

For each backend and stored size it starts ``silta serve`` on a fresh database, loads the
data with 100-entry transaction Bundles, measures each operation at each concurrency for a
fixed time, and prints and writes a table (``bench/results/<timestamp>.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from sqlalchemy.engine import make_url

from bench.calibrate import MachineSpeed, machine_speed
from bench.client import Connection, HttpError, RequestMaker, Stats, measure, new_event_loop
from bench.data import (
    DATE_WINDOW_HIGH,
    DATE_WINDOW_LOW,
    ENTRIES_PER_BUNDLE,
    HETU_SYSTEM,
    IN_WINDOW_COUNT,
    Generator,
    Organizations,
    location_key,
)
from bench.trust import PROVIDER, RECIPIENT, Parties
from gateway.api.allocator import allocator_in_use
from tests.fixtures import load_fixture

HOST = "127.0.0.1"
LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
"""Hosts in a database URL that name this machine."""
BASE = "/fhir"
ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
OPERATIONS = (
    "read",
    "search-token",
    "search-reference",
    "search-date",
    "create",
    "transaction",
)


@dataclass
class Row:
    """One line of the result table."""

    backend: str
    size: str
    operation: str
    concurrency: int
    stats: Stats
    memory: Memory | None = None

    def cells(self) -> list[str]:
        p50 = self.stats.percentile_ms(50)
        p95 = self.stats.percentile_ms(95)
        errors = str(self.stats.errors)
        if self.stats.errors:
            kinds = ", ".join(f"{k}: {n}" for k, n in self.stats.statuses.most_common())
            errors += f" ({kinds})"
        server_cpu = self.stats.cpu_ms_per_request(self.stats.server_cpu)
        client_cpu = self.stats.cpu_ms_per_request(self.stats.client_cpu)
        load = self.stats.load_average
        return [
            self.backend,
            self.size,
            self.operation,
            str(self.concurrency),
            f"{self.stats.rate:.1f}",
            _ms(p50),
            _ms(p95),
            _ms(server_cpu),
            _ms(client_cpu),
            "-" if load is None else f"{load:.1f}",
            errors,
        ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


HEADERS = [
    "backend",
    "stored",
    "operation",
    "conc",
    "req/s",
    "p50 ms",
    "p95 ms",
    "srv cpu ms/req",
    "cli cpu ms/req",
    "load1",
    "errors",
]


@dataclass
class Memory:
    """Resident memory of the server process tree, in KiB (VmRSS = RssAnon + RssFile + ...)."""

    rss_kb: int
    hwm_kb: int
    anon_kb: int
    file_kb: int
    pss_kb: int
    processes: int

    def __str__(self) -> str:
        plural = "es" if self.processes != 1 else ""
        return (
            f"VmRSS {_mib(self.rss_kb)} (anon {_mib(self.anon_kb)}, file {_mib(self.file_kb)}),"
            f" VmHWM {_mib(self.hwm_kb)}, Pss {_mib(self.pss_kb)}"
            f" ({self.processes} process{plural})"
        )


def _mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


@dataclass
class Dataset:
    """What the load put on the server, for choosing request targets."""

    keys: list[tuple[str, str]] = field(default_factory=list)
    patients: list[tuple[str, str]] = field(default_factory=list)
    """(id, HETU) of every loaded Patient."""
    with_request: list[str] = field(default_factory=list)
    """ids of Patients that are the subject of a ServiceRequest."""


@dataclass
class RunReport:
    """Everything measured for one backend and stored size."""

    backend: str
    size: int
    rows: list[Row] = field(default_factory=list)
    load_seconds: float = 0.0
    loaded: int = 0
    load_errors: int = 0
    memory_after_load: Memory | None = None
    memory_after_run: Memory | None = None
    server_error_lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> Iterator[int]:
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        for child in text.split():
            yield int(child)
            yield from _children(int(child))


def process_memory(pid: int) -> Memory:
    """VmRSS, VmHWM, RssAnon, RssFile and Pss summed over ``pid`` and its descendants.

    RssFile counts a file page once per mapping of it (SQLite maps the database once per
    connection); Pss divides each shared page among its mappings.
    """
    fields = {"VmRSS:": 0, "VmHWM:": 0, "RssAnon:": 0, "RssFile:": 0, "Pss:": 0}
    count = 0
    for each in (pid, *_children(pid)):
        try:
            status = Path(f"/proc/{each}/status").read_text()
            status += Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        for line in status.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in fields:
                fields[parts[0]] += int(parts[1])
    return Memory(
        rss_kb=fields["VmRSS:"],
        hwm_kb=fields["VmHWM:"],
        anon_kb=fields["RssAnon:"],
        file_kb=fields["RssFile:"],
        pss_kb=fields["Pss:"],
        processes=count,
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (from /proc)."""
    return sum(_cpu_seconds(Path(f"/proc/{each}/stat")) for each in (pid, *_children(pid)))


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the main thread of ``pid`` (proc(5), task/TID/stat):
    a server's event loop, whose CPU per request bounds its throughput."""
    return _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def processes_cpu_seconds(command: str) -> float:
    """User + system CPU seconds of every process on this host whose command name is
    ``command`` (proc(5), ``/proc/PID/stat``): a local database server's postmaster and
    backends. A process that exits between two readings takes its seconds with it."""
    total = 0.0
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] == command:
            total += _cpu_seconds_of(stat)
    return total


def local_postgresql_cpu(args: argparse.Namespace) -> Callable[[], float] | None:
    """Reads the CPU seconds of PostgreSQL's processes when ``--pg-url`` names a server
    on this host (a socket or a loopback address); None for a server elsewhere."""
    host = make_url(args.pg_url).host
    if host and host not in LOCAL_HOSTS:
        return None
    return partial(processes_cpu_seconds, "postgres")


def _cpu_seconds(stat_path: Path) -> float:
    try:
        stat = stat_path.read_text()
    except OSError:
        return 0.0
    return _cpu_seconds_of(stat)


def _cpu_seconds_of(stat: str) -> float:
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A ``silta serve`` (or trivial) subprocess in its own session, logging to a file."""

    def __init__(
        self, command: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        """Polls ``path`` until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.tail()}")
            conn = Connection(HOST, self.port)
            try:
                status, _ = await conn.request("GET", path)
                if status == 200:
                    return
            except HttpError:
                pass
            finally:
                await conn.close()
            await asyncio.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.tail()}")

    def memory(self) -> Memory:
        return process_memory(self.process.pid)

    def allocator(self) -> str:
        """The C allocator the server runs on (``silta serve`` preloads one if installed)."""
        return allocator_in_use(Path(f"/proc/{self.process.pid}/maps"))

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def loop_cpu_seconds(self) -> float:
        return main_thread_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """SIGTERM to the server's own process group, SIGKILL after 15 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def error_lines(self) -> list[str]:
        """Log lines that look like server-side errors."""
        text = self.log_path.read_text(errors="replace")
        markers = ("Traceback", "ERROR", "Exception", "CRITICAL")
        return [line for line in text.splitlines() if any(m in line for m in markers)]


def _silta_command() -> str:
    beside = Path(sys.executable).parent / "silta"
    if beside.exists():
        return str(beside)
    found = shutil.which("silta")
    if found is None:
        raise SystemExit("the `silta` command is not installed (pip install -e .)")
    return found


def _fresh_database(backend: str, workdir: Path, args: argparse.Namespace) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    import psycopg

    name = args.pg_database
    with psycopg.connect(args.pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{args.pg_url.rstrip('/')}/{name}"


def _analyze_postgresql(args: argparse.Namespace) -> list[str]:
    """ANALYZE the benchmark database unless told not to; notes on the planner statistics."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(args.pg_admin_url, dbname=args.pg_database)) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
        autovacuum = row[0] if row else "?"
        notes = [f"PostgreSQL autovacuum is {autovacuum}"]
        if args.no_analyze:
            notes.append("no ANALYZE after the load (--no-analyze)")
        else:
            conn.execute("ANALYZE")
            conn.commit()
            notes.append("ANALYZE run after the load")
    return notes


async def _post_json(conn: Connection, path: str, data: dict[str, Any]) -> dict[str, Any]:
    status, payload = await conn.request("POST", path, orjson.dumps(data))
    if not 200 <= status < 300:
        raise RuntimeError(f"POST {path} -> {status}: {payload[:500]!r}")
    result: dict[str, Any] = orjson.loads(payload)
    return result


async def _create_organizations(port: int) -> Organizations:
    conn = Connection(HOST, port)
    try:
        made: dict[str, str] = {}
        for name in ("kela", "kela-toimeentulotuki", "pirha", "varha", "helsinki"):
            org = load_fixture(name)
            org.pop("id", None)
            org.pop("endpoint", None)
            if "partOf" in org:
                org["partOf"] = {"reference": made["kela"]}
            created = await _post_json(conn, f"{BASE}/Organization", org)
            made[name] = f"Organization/{created['id']}"
        return Organizations(
            kela_unit=made["kela-toimeentulotuki"],
            areas=(made["pirha"], made["varha"], made["helsinki"]),
        )
    finally:
        await conn.close()


def _record(dataset: Dataset, bundle: dict[str, Any], response: dict[str, Any]) -> int:
    """Adds the created resources to ``dataset``; returns how many entries failed."""
    resolved: dict[str, str] = {}
    failures = 0
    for sent, got in zip(bundle["entry"], response.get("entry", []), strict=False):
        outcome = got.get("response", {})
        key = location_key(outcome.get("location", ""))
        if key is None or not str(outcome.get("status", "")).startswith("2"):
            failures += 1
            continue
        resolved[sent["fullUrl"]] = key[1]
        dataset.keys.append(key)
        resource = sent["resource"]
        if key[0] == "Patient":
            dataset.patients.append((key[1], resource["identifier"][0]["value"]))
        elif key[0] == "ServiceRequest":
            subject = resolved.get(resource["subject"]["reference"])
            if subject is not None:
                dataset.with_request.append(subject)
    return failures + max(0, len(bundle["entry"]) - len(response.get("entry", [])))


async def load(port: int, gen: Generator, size: int, loaders: int, report: RunReport) -> Dataset:
    """Stores ``size`` resources with 100-entry transactions on ``loaders`` connections."""
    dataset = Dataset()
    bundles = [min(ENTRIES_PER_BUNDLE, size - i) for i in range(0, size, ENTRIES_PER_BUNDLE)]
    queue = iter(bundles)

    async def loader() -> None:
        conn = Connection(HOST, port)
        try:
            for count in queue:
                bundle = gen.transaction()
                bundle["entry"] = bundle["entry"][:count]
                response = await _post_json(conn, BASE, bundle)
                report.load_errors += _record(dataset, bundle, response)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(loader() for _ in range(loaders)))
    report.load_seconds = time.perf_counter() - started
    report.loaded = len(dataset.keys)
    return dataset


def _makers(dataset: Dataset, gen: Generator, rng: random.Random) -> dict[str, RequestMaker]:
    keys = dataset.keys
    patients = dataset.patients
    subjects = dataset.with_request
    date_query = f"{BASE}/ServiceRequest?authored=ge{DATE_WINDOW_LOW}&authored=lt{DATE_WINDOW_HIGH}"

    def read() -> tuple[str, str, bytes | None]:
        kind, ident = rng.choice(keys)
        return "GET", f"{BASE}/{kind}/{ident}", None

    def search_token() -> tuple[str, str, bytes | None]:
        hetu = rng.choice(patients)[1]
        return "GET", f"{BASE}/Patient?identifier={quote(f'{HETU_SYSTEM}|{hetu}', safe=':')}", None

    def search_reference() -> tuple[str, str, bytes | None]:
        subject = rng.choice(subjects)
        return "GET", f"{BASE}/ServiceRequest?subject={quote(f'Patient/{subject}')}", None

    def search_date() -> tuple[str, str, bytes | None]:
        return "GET", date_query, None

    def create() -> tuple[str, str, bytes | None]:
        return "POST", f"{BASE}/Patient", orjson.dumps(gen.patient())

    def transaction() -> tuple[str, str, bytes | None]:
        return "POST", BASE, orjson.dumps(gen.transaction())

    return {
        "read": read,
        "search-token": search_token,
        "search-reference": search_reference,
        "search-date": search_date,
        "create": create,
        "transaction": transaction,
    }


async def _search_count(port: int, path: str) -> tuple[int, list[str]]:
    conn = Connection(HOST, port)
    try:
        status, payload = await conn.request("GET", path)
    finally:
        await conn.close()
    if status != 200:
        return -status, []
    bundle = orjson.loads(payload)
    ids = [e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e]
    return len(ids), ids


async def sanity_checks(port: int, dataset: Dataset, report: RunReport) -> None:
    """One request per search, checked against what was loaded."""
    ident, hetu = dataset.patients[len(dataset.patients) // 2]
    token = f"{BASE}/Patient?identifier={quote(f'{HETU_SYSTEM}|{hetu}', safe=':')}"
    count, ids = await _search_count(port, token)
    if ids != [ident]:
        report.notes.append(f"search-token check: expected [{ident}], got {count} {ids[:3]}")
    subject = dataset.with_request[len(dataset.with_request) // 2]
    count, _ = await _search_count(port, f"{BASE}/ServiceRequest?subject=Patient/{subject}")
    if count != 1:
        report.notes.append(f"search-reference check: expected 1 match, got {count}")
    path = f"{BASE}/ServiceRequest?authored=ge{DATE_WINDOW_LOW}&authored=lt{DATE_WINDOW_HIGH}"
    count, _ = await _search_count(port, path)
    if count != IN_WINDOW_COUNT:
        report.notes.append(f"search-date check: expected {IN_WINDOW_COUNT} matches, got {count}")


async def run_one(backend: str, size: int, args: argparse.Namespace) -> RunReport:
    """Fresh database and server, load, measure, stop."""
    report = RunReport(backend, size)
    report.notes.append(f"authentication and access policy: {args.auth}")
    if args.auth == "on":
        report.notes.append(f"measured requests made by the {args.reader} of the data")
    workdir = Path(tempfile.mkdtemp(prefix=f"silta-bench-{backend}-"))
    url = _fresh_database(backend, workdir, args)
    port = _free_port()
    parties = Parties() if args.auth == "on" else None
    if parties is not None:
        parties.register(url)
    command = [_silta_command(), "serve", "--host", HOST, "--port", str(port)]
    command += ["--database", url, "--workers", str(args.workers)]
    env = {"SILTA_AUTH": args.auth, "SILTA_PUBLIC_BASE_URL": f"http://{HOST}:{port}{BASE}"}
    server = Server(command, port, workdir / "server.log", env)

    def act_as(org: str) -> None:
        if parties is not None:
            Connection.extra_headers = parties.headers(org, f"http://{HOST}:{port}")

    try:
        await server.wait_ready(f"{BASE}/metadata")
        report.notes.append(f"server memory allocator: {server.allocator()}")
        act_as(PROVIDER)
        orgs = await _create_organizations(port)
        gen = Generator(orgs, seed=args.seed)
        _say(f"[{backend} {size}] loading {size} resources ...")
        dataset = await load(port, gen, size, args.loaders, report)
        rate = report.loaded / report.load_seconds if report.load_seconds else 0.0
        took = f"{report.load_seconds:.1f} s ({rate:.0f}/s)"
        _say(f"[{backend} {size}] loaded {report.loaded} resources in {took}")
        report.memory_after_load = server.memory()
        if backend == "postgresql":
            report.notes.extend(_analyze_postgresql(args))
        reader = RECIPIENT if args.reader == "recipient" else PROVIDER
        act_as(reader)
        await sanity_checks(port, dataset, report)
        makers = _makers(dataset, gen, random.Random(args.seed))
        for op in args.ops:
            for concurrency in args.concurrency:
                act_as(reader)  # a fresh token: access tokens live five minutes
                stats = await measure(
                    HOST,
                    port,
                    makers[op],
                    concurrency=concurrency,
                    duration=args.duration,
                    warmup=args.warmup,
                    server_cpu=server.cpu_seconds,
                )
                row = Row(backend, _size_label(size), op, concurrency, stats, server.memory())
                report.rows.append(row)
                _say("  " + " | ".join(row.cells()))
                if stats.first_error:
                    report.notes.append(f"{op} c={concurrency} first error: {stats.first_error}")
        report.memory_after_run = server.memory()
    finally:
        Connection.extra_headers = b""
        server.stop()
        report.server_error_lines = server.error_lines()
        if args.keep:
            _say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


async def client_ceiling(args: argparse.Namespace) -> list[Row]:
    """The client against a trivial server: the most it can measure on this machine."""
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="silta-bench-trivial-"))
    server = Server([sys.executable, "-m", "bench.trivial", str(port)], port, workdir / "log")
    rows: list[Row] = []
    try:
        await server.wait_ready("/")

        def ping() -> tuple[str, str, bytes | None]:
            return "GET", "/fhir/metadata", None

        for concurrency in args.concurrency:
            stats = await measure(
                HOST,
                port,
                ping,
                concurrency=concurrency,
                duration=min(args.duration, 5.0),
                warmup=min(args.warmup, 1.0),
                server_cpu=server.cpu_seconds,
            )
            row = Row("trivial", "-", "client ceiling (GET)", concurrency, stats)
            rows.append(row)
            _say("  " + " | ".join(row.cells()))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _size_label(size: int) -> str:
    if size % 1000 == 0 and size >= 1000:
        return f"{size // 1000}k"
    return str(size)


def _say(text: str) -> None:
    print(text, flush=True)


def format_table(rows: list[Row], markdown: bool) -> str:
    """The rows as an aligned text table or a Markdown table."""
    cells = [HEADERS, *(row.cells() for row in rows)]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "|".join("---" for _ in HEADERS) + "|")
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    numeric = set(range(3, len(HEADERS) - 1))
    out = []
    for n, c in enumerate(cells):
        parts = [
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(c, widths, strict=True))
        ]
        out.append("  ".join(parts).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


def environment_lines(speed: MachineSpeed) -> list[str]:
    """The report lines that say which code ran, on what machine, and how fast it was."""
    return [
        f"- commit {_git_commit()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}",
        f"- {speed.describe()}",
    ]


def summary(
    reports: list[RunReport], ceiling: list[Row], args: argparse.Namespace, speed: MachineSpeed
) -> str:
    """The Markdown report of the whole run."""
    lines = [
        f"# Silta benchmark {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        *environment_lines(speed),
        f"- server: `silta serve --workers {args.workers}`; client: asyncio keep-alive "
        f"connections in one process; {args.duration:g} s per measurement after "
        f"{args.warmup:g} s warm-up",
        "- req/s counts 2xx responses; errors are non-2xx responses and broken connections;"
        " p50/p95 are over 2xx responses",
        "",
        "## Results",
        "",
        format_table([*ceiling, *(r for rep in reports for r in rep.rows)], markdown=True),
        "",
        "## Load and memory",
        "",
    ]
    for rep in reports:
        rate = rep.loaded / rep.load_seconds if rep.load_seconds else 0.0
        lines.append(f"### {rep.backend}, {_size_label(rep.size)} stored")
        lines.append("")
        lines.append(
            f"- load: {rep.loaded} resources in {rep.load_seconds:.1f} s ({rate:.0f}/s), "
            f"{rep.load_errors} failed entries"
        )
        lines.append(f"- server memory after load: {rep.memory_after_load}")
        lines.append(f"- server memory after run: {rep.memory_after_run}")
        lines.append("- server memory after each measurement:")
        lines.extend(f"  - {r.operation} c={r.concurrency}: {r.memory}" for r in rep.rows)
        lines.append(f"- server log error lines: {len(rep.server_error_lines)}")
        lines.extend(f"  - `{line.strip()[:200]}`" for line in rep.server_error_lines[:10])
        lines.extend(f"- note: {note}" for note in rep.notes)
        lines.append("")
    return "\n".join(lines)


def add_postgresql_options(parser: argparse.ArgumentParser, *, database: str) -> None:
    """Where the PostgreSQL benchmark database is (re)created, and whether it is analysed."""
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="libpq URL used to (re)create the benchmark database",
    )
    parser.add_argument(
        "--pg-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432",
        help="SQLAlchemy URL of the server, without the database name",
    )
    parser.add_argument("--pg-database", default=database)
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="skip ANALYZE of the PostgreSQL database after the load",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--sizes", default="10000", help="comma-separated stored sizes")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated connection counts")
    parser.add_argument("--ops", default=",".join(OPERATIONS), help="comma-separated operations")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--loaders", type=int, default=2, help="connections used by the load")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument(
        "--auth",
        choices=("on", "off"),
        default="on",
        help="on: tokens, and reads/searches by another organisation through an agreement",
    )
    parser.add_argument(
        "--reader",
        choices=("recipient", "provider"),
        default="recipient",
        help="with --auth on: who makes the measured requests, the organisation the data "
        "is disclosed to through an agreement, or its custodian (no policy decision)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and server log")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the client ceiling")
    add_postgresql_options(parser, database="silta_bench")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = set(args.ops) - set(OPERATIONS)
    if unknown:
        parser.error(f"unknown operations: {', '.join(sorted(unknown))}")
    if any(size < ENTRIES_PER_BUNDLE for size in args.sizes):
        parser.error(f"sizes must be at least {ENTRIES_PER_BUNDLE}")
    return args


async def _main(args: argparse.Namespace) -> tuple[list[RunReport], list[Row]]:
    ceiling: list[Row] = []
    if not args.no_ceiling:
        _say("client ceiling against a trivial server:")
        ceiling = await client_ceiling(args)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    reports = []
    for backend in backends:
        for size in args.sizes:
            reports.append(await run_one(backend, size, args))
    return reports, ceiling


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    speed = machine_speed()
    _say(speed.describe())
    loop = new_event_loop()
    try:
        reports, ceiling = loop.run_until_complete(_main(args))
    finally:
        loop.close()
    rows = [*ceiling, *(row for rep in reports for row in rep.rows)]
    _say("")
    _say(format_table(rows, markdown=False))
    for rep in reports:
        _say(
            f"{rep.backend} {_size_label(rep.size)}: after load {rep.memory_after_load}; "
            f"after run {rep.memory_after_run}; server log error lines: "
            f"{len(rep.server_error_lines)}"
        )
        for note in rep.notes:
            _say(f"  note: {note}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.md"
    path.write_text(summary(reports, ceiling, args, speed) + "\n", encoding="utf-8")
    _say(f"written {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
