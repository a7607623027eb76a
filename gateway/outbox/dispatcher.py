"""Delivery of the outbox: claim due messages, POST each SOAP envelope to its
receiver's security server, record the outcome.

A message is delivered when the receiver answers HTTP 200 with an envelope that is
not a SOAP Fault (SOAP 1.1 §4.4; X-Road message protocol v4.0 §2.5 answers technical
errors with a Fault). Anything else is a failed attempt: the message is due again
after an exponential, jittered backoff, and dead after the last allowed attempt.
All state is in the database, so a restarted or second dispatcher carries on where
another stopped; delivery is at least once, receivers drop duplicates by message id.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import httpx

from adapters.xroad.envelope import CONTENT_TYPE, XRoadFault, parse_fault
from gateway.outbox import messages
from gateway.outbox.messages import OutboxMessage
from gateway.outbox.settings import OutboxSettings
from gateway.store.database import Database

logger = logging.getLogger(__name__)

# X-Road services are described with soapAction="" (PR-MESS Annex C); SOAP 1.1 §6.1.1.
SOAP_ACTION = '""'
_ERROR_BODY_CHARS = 300


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What one round of delivery did."""

    delivered: int = 0
    retrying: int = 0
    dead: int = 0

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.dead

    def __add__(self, other: DispatchResult) -> DispatchResult:
        return DispatchResult(
            self.delivered + other.delivered,
            self.retrying + other.retrying,
            self.dead + other.dead,
        )


class Dispatcher:
    """Delivers due outbox messages, in rounds (:meth:`run_once`, :meth:`drain`) or in a
    background thread (:meth:`start` / :meth:`stop`). ``clock`` gives the current time
    in seconds since the epoch and ``random_fraction`` the jitter draw in [0, 1)."""

    def __init__(
        self,
        db: Database,
        settings: OutboxSettings | None = None,
        *,
        http_client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.settings = settings or OutboxSettings.from_env()
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(
            timeout=self.settings.http_timeout_seconds, follow_redirects=False
        )
        self._clock = clock
        self._random = random_fraction
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- rounds ------------------------------------------------------------------

    def run_once(self) -> DispatchResult:
        """Claims one batch of due messages and tries to deliver each of them."""
        now = self._now()
        with self.db.read() as conn:
            if not messages.any_due(conn, now=now):
                return DispatchResult()
        lease_until = now + int(self.settings.lease_seconds * 1_000_000)
        with self.db.write() as conn:
            batch = messages.claim_due(
                conn, now=now, limit=self.settings.batch_size, lease_until=lease_until
            )
        result = DispatchResult()
        for index, message in enumerate(batch):
            if self._stopping.is_set():
                with self.db.write() as conn:
                    messages.release(conn, [m.id for m in batch[index:]], now=self._now())
                break
            result += self._deliver(message)
        return result

    def drain(self, max_rounds: int = 10_000) -> DispatchResult:
        """Runs rounds until no message is due (failed ones are due only later)."""
        total = DispatchResult()
        for _ in range(max_rounds):
            result = self.run_once()
            total += result
            if result.attempted == 0:
                break
        return total

    def _deliver(self, message: OutboxMessage) -> DispatchResult:
        error = self._post(message)
        now = self._now()
        with self.db.write() as conn:
            if error is None:
                messages.mark_delivered(conn, message.id, now=now)
                return DispatchResult(delivered=1)
            if message.attempts >= self.settings.max_attempts:
                messages.mark_failed(conn, message.id, error=error, retry_at=None)
                logger.warning(
                    "outbox message %s to %s is dead after %d attempts: %s",
                    message.message_id,
                    message.organization_id,
                    message.attempts,
                    error,
                )
                return DispatchResult(dead=1)
            wait = self.settings.backoff_seconds(message.attempts, self._random())
            retry_at = now + int(wait * 1_000_000)
            messages.mark_failed(conn, message.id, error=error, retry_at=retry_at)
            return DispatchResult(retrying=1)

    def _post(self, message: OutboxMessage) -> str | None:
        """None when the receiver took the message, else what went wrong."""
        try:
            response = self._http.post(
                message.url,
                content=message.payload,
                headers={"Content-Type": CONTENT_TYPE, "SOAPAction": SOAP_ACTION},
            )
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            return f"{type(error).__name__}: {error}"
        try:
            fault = parse_fault(response.content)
        except XRoadFault as error:
            if response.status_code == 200:
                return f"The response is not a SOAP envelope: {error.message}"
            fault = None
        status = f"HTTP {response.status_code}"
        if fault is not None:
            return f"{status}, SOAP Fault {fault.code}: {fault.string}"
        if response.status_code != 200:
            snippet = response.text[:_ERROR_BODY_CHARS].strip()
            return f"{status}: {snippet}" if snippet else status
        return None

    def _now(self) -> int:
        return int(self._clock() * 1_000_000)

    # -- background thread -------------------------------------------------------

    def start(self) -> None:
        """Delivers in a background thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="silta-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stops the background thread; messages claimed but not yet sent are handed back."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        self.stop()
        if self._owns_client:
            self._http.close()

    def __enter__(self) -> Dispatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                result = self.run_once()
            except Exception:
                logger.exception("outbox delivery round failed")
                result = DispatchResult()
            if result.attempted < self.settings.batch_size:
                self._stopping.wait(self.settings.poll_seconds)
