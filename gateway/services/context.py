"""What every service call is given: the database, settings, policy and request facts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection

from gateway.config import Settings
from gateway.policy import AccessPolicy, PermitAll
from gateway.store.database import Database
from gateway.store.raw import RawExecutor


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

    def url_for(self, resource_type: str, resource_id: str, version: int | None = None) -> str:
        url = f"{self.base_url}/{resource_type}/{resource_id}"
        return url if version is None else f"{url}/_history/{version}"
