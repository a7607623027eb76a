"""A recording loopback X-Road endpoint: a real HTTP server on 127.0.0.1 (random port,
own thread) standing in for a counterpart's security server. It answers X-Road
requests (X-Road message protocol v4.0 §2.3-2.5) with a response echoing their
headers, records everything it receives, and fails on demand: HTTP 500 or a SOAP
Fault for the next N requests or until :meth:`LoopbackSecurityServer.recover`, or
refused connections while stopped. Tests and ``silta demo`` use it as Kela.

    with LoopbackSecurityServer() as server:
        ...  # register server.url as the organisation's security server, deliver
        assert server.duplicate_deliveries() == {}
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from lxml import etree

from adapters.xroad.envelope import (
    CONTENT_TYPE,
    FaultCode,
    XRoadFault,
    build_fault,
    build_response,
    parse_request,
    response_element,
)


class Failure(enum.Enum):
    """How the server fails a request."""

    HTTP_500 = "http-500"
    # A SOAP Fault with HTTP 500 (SOAP 1.1 §6.2), or with HTTP 200 as some services do.
    SOAP_FAULT = "soap-fault"
    SOAP_FAULT_HTTP_200 = "soap-fault-http-200"


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as received, and whether it was answered as delivered."""

    path: str
    headers: dict[str, str]
    body: bytes
    message_id: str | None
    delivered: bool


class LoopbackSecurityServer:
    """Answers X-Road requests on ``url``; see the module docstring."""

    def __init__(self, *, response_delay: float = 0.0) -> None:
        self.response_delay = response_delay
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._failure = Failure.HTTP_500
        self._failures_left: int | None = 0  # None: fail until recover()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- life cycle --------------------------------------------------------------

    def start(self) -> LoopbackSecurityServer:
        """Listens (again, on the same port after a stop)."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self))
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops listening: connections are refused until :meth:`start`."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> LoopbackSecurityServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("The loopback security server has not been started")
        return f"http://127.0.0.1:{self._port}/"

    # -- failures ----------------------------------------------------------------

    def fail_next(self, count: int, failure: Failure = Failure.HTTP_500) -> None:
        """Fails the next ``count`` requests."""
        with self._lock:
            self._failure = failure
            self._failures_left = count

    def fail_always(self, failure: Failure = Failure.HTTP_500) -> None:
        """Fails every request until :meth:`recover`."""
        with self._lock:
            self._failure = failure
            self._failures_left = None

    def recover(self) -> None:
        with self._lock:
            self._failures_left = 0

    def _take_failure(self) -> Failure | None:
        with self._lock:
            if self._failures_left is None:
                return self._failure
            if self._failures_left > 0:
                self._failures_left -= 1
                return self._failure
            return None

    # -- what was received -------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def delivered_ids(self) -> list[str]:
        """Message ids of the requests answered as delivered, in order."""
        return [r.message_id for r in self.requests if r.delivered and r.message_id]

    def duplicate_deliveries(self) -> dict[str, int]:
        """Message ids delivered more than once, with their count."""
        counts = Counter(self.delivered_ids())
        return {message_id: n for message_id, n in counts.items() if n > 1}

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> bool:
        """Waits until ``count`` requests have been answered as delivered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.delivered_ids()) >= count:
                return True
            time.sleep(0.01)
        return len(self.delivered_ids()) >= count

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)


def _handler(endpoint: LoopbackSecurityServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if endpoint.response_delay:
                time.sleep(endpoint.response_delay)
            try:
                request = parse_request(body)
            except XRoadFault as fault:
                self._keep(body, None, delivered=False)
                self._answer(500, fault.envelope())
                return
            failure = endpoint._take_failure()
            self._keep(body, request.message_id, delivered=failure is None)
            if failure is Failure.HTTP_500:
                self._answer(500, b"security server unavailable", "text/plain")
            elif failure is not None:
                fault_body = build_fault(
                    FaultCode.SERVER, "Service temporarily unavailable", request=request
                )
                self._answer(200 if failure is Failure.SOAP_FAULT_HTTP_200 else 500, fault_body)
            else:
                element = response_element(request)
                etree.SubElement(element, "received").text = "true"
                self._answer(200, build_response(request, element))

        def _keep(self, body: bytes, message_id: str | None, *, delivered: bool) -> None:
            endpoint._record(
                ReceivedRequest(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    message_id=message_id,
                    delivered=delivered,
                )
            )

        def _answer(self, status: int, body: bytes, content_type: str = CONTENT_TYPE) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
