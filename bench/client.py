"""A lean HTTP/1.1 keep-alive load client on asyncio streams (uvloop when available)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

Request = tuple[str, str, bytes | None]
"""(method, path with query, body)."""

RequestMaker = Callable[[], Request]

_READ_LIMIT = 64 * 1024 * 1024


class HttpError(Exception):
    """The connection broke or the response could not be parsed."""


class Connection:
    """One keep-alive connection; requests on it are strictly sequential.

    ``extra_headers`` (whole header lines) go with every request of every connection,
    e.g. the bearer token of the client the benchmark acts as.
    """

    extra_headers = b""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=_READ_LIMIT
            )
        return self._reader, self._writer

    async def close(self) -> None:
        """Closes the socket; the next request opens a new one."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Sends one request and returns (status, body)."""
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        head.append(b"Accept: application/fhir+json\r\n")
        head.append(Connection.extra_headers)
        if body is not None:
            head.append(b"Content-Type: application/fhir+json\r\n")
            head.append(f"Content-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        if body is not None:
            head.append(body)
        try:
            reader, writer = await self._open()
            writer.write(b"".join(head))
            raw = await reader.readuntil(b"\r\n\r\n")
            status, length, chunked, close = _parse_head(raw)
            if chunked:
                payload = await _read_chunked(reader)
            elif length is not None:
                payload = await reader.readexactly(length)
            else:
                payload = b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            await self.close()
            raise HttpError(f"{type(e).__name__}: {e}") from e
        if close:
            await self.close()
        return status, payload


def _parse_head(raw: bytes) -> tuple[int, int | None, bool, bool]:
    lines = raw.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"connection":
            close = value.strip().lower() == b"close"
    return status, length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass
class Stats:
    """Outcome of one measured phase."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    first_error: str = ""
    client_cpu: float = 0.0
    server_cpu: float | None = None
    loop_cpu: float | None = None  # the server's main thread: its event loop
    database_cpu: float | None = None  # a database server on this host (PostgreSQL)
    load_average: float | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def cpu_ms_per_request(self, seconds: float | None) -> float | None:
        """``seconds`` of CPU divided over the completed requests, in milliseconds."""
        done = self.ok + self.errors
        if seconds is None or done == 0:
            return None
        return seconds * 1000 / done

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile of successful requests, in milliseconds."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000


async def _worker(
    host: str,
    port: int,
    make: RequestMaker,
    deadline: float,
    stats: Stats | None,
) -> None:
    conn = Connection(host, port)
    clock = time.perf_counter
    try:
        while clock() < deadline:
            method, path, body = make()
            started = clock()
            try:
                status, payload = await conn.request(method, path, body)
            except HttpError as e:
                if stats is not None:
                    stats.errors += 1
                    stats.statuses["conn"] += 1
                    stats.first_error = stats.first_error or str(e)
                await asyncio.sleep(0.01)
                continue
            if stats is None:
                continue
            if 200 <= status < 300:
                stats.latencies.append(clock() - started)
            else:
                stats.errors += 1
                stats.statuses[str(status)] += 1
                if not stats.first_error:
                    stats.first_error = f"{status} {method} {path}: {payload[:300]!r}"
    finally:
        await conn.close()


async def measure(
    host: str,
    port: int,
    make: RequestMaker,
    *,
    concurrency: int,
    duration: float,
    warmup: float = 0.0,
    server_cpu: Callable[[], float] | None = None,
    loop_cpu: Callable[[], float] | None = None,
    database_cpu: Callable[[], float] | None = None,
) -> Stats:
    """Runs ``concurrency`` connections issuing requests from ``make`` for ``duration`` s.

    ``server_cpu`` reads the server's CPU seconds, ``loop_cpu`` those of its event
    loop's thread and ``database_cpu`` those of a database server on this host; they
    are sampled around the measurement.
    """
    if warmup > 0:
        until = time.perf_counter() + warmup
        await asyncio.gather(*(_worker(host, port, make, until, None) for _ in range(concurrency)))
    stats = Stats()
    cpu_before = server_cpu() if server_cpu is not None else 0.0
    loop_before = loop_cpu() if loop_cpu is not None else 0.0
    database_before = database_cpu() if database_cpu is not None else 0.0
    client_before = time.process_time()
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(_worker(host, port, make, deadline, stats) for _ in range(concurrency)))
    stats.elapsed = time.perf_counter() - started
    stats.client_cpu = time.process_time() - client_before
    if server_cpu is not None:
        stats.server_cpu = server_cpu() - cpu_before
    if loop_cpu is not None:
        stats.loop_cpu = loop_cpu() - loop_before
    if database_cpu is not None:
        stats.database_cpu = database_cpu() - database_before
    stats.load_average = _load_average()
    return stats


def _load_average() -> float | None:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop if uvloop is installed, else the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
