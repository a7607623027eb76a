"""What every service call is given: the database, settings, policy and request facts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection

from gateway.auth.scopes import permits
from gateway.auth.tokens import InsufficientScope
from gateway.config import Settings
from gateway.policy import AccessPolicy, Decision, PermitAll, Requester, Touched, Verdict
from gateway.store.database import Database
from gateway.store.raw import RawExecutor
from gateway.store.repository import StoredResource

WriteHook = Callable[["RequestContext", Connection, StoredResource, StoredResource | None], None]
"""Called with the context, the open transaction, the stored version and the one before."""


@dataclass
class RequestContext:
    """One request's view of the gateway.

    Service functions open their transaction through ``write()`` / ``read()``; inside a
    transaction Bundle those yield the Bundle's one open transaction instead, so the
    same service functions serve single requests and Bundle entries alike.
    """

    db: Database
    settings: Settings
    base_url: str
    policy: AccessPolicy = field(default_factory=PermitAll)
    strict_handling: bool = False
    # Run after every write, inside its transaction (e.g. the Kela exchange queues the
    # feedback a Task change causes in the same transaction as the change).
    write_hooks: tuple[WriteHook, ...] = ()
    # The current versions that a transaction Bundle read and locked in advance
    # (PostgreSQL), each taken by the write it was read for.
    locked_current: dict[tuple[str, str], StoredResource | None] = field(
        default_factory=dict, init=False, repr=False
    )
    # The conditional writes' (type, criteria) whose locks the open transaction holds.
    locked_conditions: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False)
    _conn: Connection | None = field(default=None, init=False, repr=False)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        with self.db.write() as conn:
            self._conn = conn
            try:
                yield conn
            finally:
                self._conn = None
                self.locked_conditions.clear()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        with self.db.read() as conn:
            yield conn

    @contextmanager
    def read_raw(self) -> Iterator[RawExecutor]:
        """A read on the driver connection, for the fixed statements of the store."""
        if self._conn is not None:
            yield RawExecutor.of(self._conn)
            return
        with self.db.read_raw() as executor:
            yield executor

    @property
    def services_on_threads(self) -> bool:
        """Whether service calls run in worker threads rather than on the event loop
        (``Settings.service_threads``; by default on PostgreSQL only)."""
        chosen = self.settings.service_threads
        return self.db.is_postgresql if chosen is None else chosen

    @property
    def requester(self) -> Requester | None:
        """Who asks (None when the gateway runs without authentication)."""
        return self.policy.requester

    def authorize(self, resource_type: str, interaction: str) -> None:
        """403 unless the token's scopes allow ``interaction`` on ``resource_type``
        (SMART v2 ``cruds`` letters, v1 ``read``/``write``)."""
        requester = self.policy.requester
        if requester is not None and not permits(requester.scopes, resource_type, interaction):
            raise InsufficientScope(
                f"The access token does not allow {interaction} on {resource_type}"
            )

    def wrote(
        self, conn: Connection, stored: StoredResource, previous: StoredResource | None
    ) -> None:
        """Runs the write hooks and records the written resource for the access log."""
        for hook in self.write_hooks:
            hook(self, conn, stored, previous)
        if self.policy.requester is not None:
            self.policy.touched.append(
                Touched(
                    stored.res_type,
                    stored.res_id,
                    stored.custodian,
                    stored.client,
                    Decision(
                        Verdict.PERMIT, f"{stored.method or 'write'} by the requester", "write"
                    ),
                )
            )

    def url_for(self, resource_type: str, resource_id: str, version: int | None = None) -> str:
        url = f"{self.base_url}/{resource_type}/{resource_id}"
        return url if version is None else f"{url}/_history/{version}"
