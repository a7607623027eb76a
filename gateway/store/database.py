"""Database engine set-up: embedded SQLite (WAL) by default, PostgreSQL for production.

Transactions are explicit: ``Database.write()`` opens a write transaction (on SQLite
``BEGIN IMMEDIATE``, so concurrent writers queue on the lock instead of failing on a
lock upgrade), ``Database.read()`` a read transaction (one consistent snapshot).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool

from gateway.store.checkpoint import WalCheckpointer
from gateway.store.group_commit import WRITE_FLAG, BackgroundCommits, GroupCommit
from gateway.store.raw import RawExecutor

SQLITE_POOL_SIZE = 8
POSTGRES_MAX_OVERFLOW = 10
"""Connections a PostgreSQL pool opens beyond its size under load."""
COMMIT_THREADS = 8
"""Threads that wait for PostgreSQL commits of requests served on the event loop."""
SQLITE_GROUP_COMMIT = 32
"""Most writers that share one SQLite transaction (see gateway.store.group_commit)."""
PING_AFTER_IDLE_SECONDS = 1.0
"""A pooled PostgreSQL connection idle for longer is pinged before it is handed out."""
SQLITE_PRAGMAS = (
    # First, so that switching a new database to WAL waits for another connection's lock.
    "PRAGMA busy_timeout=30000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA cache_size=-16384",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA wal_autocheckpoint=10000",
)


class Database:
    """An engine plus the transaction discipline every service call uses."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 20) -> None:
        self._thread_readers: threading.local | None = threading.local()
        self._reader_connections: list[Any] = []
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        # The most pooled connections open at once (SQLite's thread readers are extra).
        self.max_connections: int
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
            if parsed.database in (None, "", ":memory:"):
                kwargs["poolclass"] = NullPool
                self._thread_readers = None
            else:
                kwargs["pool_size"] = min(pool_size, SQLITE_POOL_SIZE)
                kwargs["max_overflow"] = 0
                # SQLite drops a connection's page cache when another connection has
                # written since its last transaction: handing out the connection used
                # last keeps the writer's cache warm (a first-in, first-out pool made a
                # Kela notification re-read about 30 pages at concurrency 16).
                kwargs["pool_use_lifo"] = True
            self.max_connections = min(pool_size, SQLITE_POOL_SIZE)
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = POSTGRES_MAX_OVERFLOW
            self.max_connections = pool_size + POSTGRES_MAX_OVERFLOW
        self.engine: Engine = create_engine(url, **kwargs)
        # SQLite has one writer at a time: writers of this process queue for one shared
        # transaction (group commit) instead of polling the database lock with
        # busy_timeout back-off.
        self._sqlite_writers: GroupCommit | None = None
        self._background_commits: BackgroundCommits | None = None
        self._checkpointer: WalCheckpointer | None = None
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
            if self._thread_readers is not None:  # a file, not an in-memory database
                self._checkpointer = WalCheckpointer(self._plain_sqlite_connection)
            self._sqlite_writers = GroupCommit(self.engine, max_members=SQLITE_GROUP_COMMIT)
        else:
            _ping_idle_connections(self.engine)
            _plan_queries_for_their_values(self.engine)
            self._background_commits = BackgroundCommits(self.engine, threads=COMMIT_THREADS)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception.

        On SQLite the transaction may be shared with other writers of this process, and
        on PostgreSQL committed on a worker thread, when the writer runs on the event
        loop inside ``deferred_commits`` (:mod:`gateway.store.group_commit`); each
        writer's work is still all or nothing.
        """
        writers = self._sqlite_writers or self._background_commits
        assert writers is not None
        with writers.write() as conn:
            yield conn

    async def writers_free(self) -> None:
        """Returns once a write on the event loop can take SQLite's write turn without
        waiting for a shared transaction's commit (at once on PostgreSQL)."""
        if self._sqlite_writers is not None:
            await self._sqlite_writers.turn_free()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads. On SQLite they share one transaction, over one
        snapshot. On PostgreSQL each statement runs on its own (autocommit): under READ
        COMMITTED every statement takes its own snapshot anyway (manual §13.2.1), and
        the driver then sends no BEGIN before the first and no COMMIT after the last."""
        if self.is_postgresql:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                yield conn
            return
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def read_raw(self) -> Iterator[RawExecutor]:
        """A pooled driver connection for single-statement reads (each statement is
        atomic on its own; the pool ends any implicit transaction on return)."""
        if self.is_sqlite and self._thread_readers is not None:
            # An autocommit reader per thread, outside the pool: in WAL mode each
            # statement sees everything committed before it started.
            reader = getattr(self._thread_readers, "connection", None)
            if reader is None:
                reader = self._sqlite_connection()
                self._thread_readers.connection = reader
                self._reader_connections.append(reader)
            yield RawExecutor(reader, self.engine.dialect)
            return
        raw = self.engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            if not self.is_postgresql:
                yield RawExecutor(driver, self.engine.dialect)
                return
            # In autocommit each statement is its own transaction: the driver sends no
            # BEGIN before it and the pool's reset no ROLLBACK after it (two round trips
            # of three). The pool gets the connection back as it lent it.
            driver.autocommit = True
            try:
                yield RawExecutor(driver, self.engine.dialect)
            finally:
                if not driver.closed:
                    driver.autocommit = False
        finally:
            raw.close()

    def _sqlite_connection(self) -> Any:
        """A driver connection outside the pool, with the pragmas."""
        connection = self._plain_sqlite_connection()
        apply_sqlite_pragmas(connection)
        return connection

    def _plain_sqlite_connection(self) -> Any:
        """A driver connection outside the pool, as the driver opens it: enough for the
        checkpoint thread (a ``PASSIVE`` checkpoint waits for no lock, and the connections
        that read and write set the database's mode)."""
        dialect = self.engine.dialect
        args, params = dialect.create_connect_args(self.engine.url)
        return dialect.connect(*args, **{**params, "check_same_thread": False})

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._sqlite_writers is not None:
            self._sqlite_writers.shutdown()
        if self._background_commits is not None:
            self._background_commits.shutdown()
        for reader in self._reader_connections:
            reader.close()
        self._reader_connections.clear()
        self.engine.dispose()


def apply_sqlite_pragmas(dbapi_connection: Any) -> None:
    """Autocommit at the driver (transactions are begun explicitly) and the pragmas."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling (SQLAlchemy "Dealing with Disconnects") for
    connections that sat idle: one idle for more than ``PING_AFTER_IDLE_SECONDS`` is
    pinged when checked out, and a dead one is replaced by a fresh connection. A
    connection back in the pool a moment ago is handed out without the round trip that
    ``pool_pre_ping`` spends on every checkout (the bypass window of pools like HikariCP);
    should the server have gone in that moment, the statement fails, and SQLAlchemy
    invalidates the pool's connections."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


def _plan_queries_for_their_values(engine: Engine) -> None:
    """Statements that SQLAlchemy compiles (searches, whose values differ wildly in
    selectivity) go to PostgreSQL unnamed, so each is planned for its own values
    (protocol-flow.html §55.2.3: an unnamed statement is planned at Bind). The store's
    fixed statements, sent on the driver connection (``RawExecutor``, the resource
    writes of ``pg_write``), are prepared by psycopg after a few executions and keep a
    cached plan (sql-prepare.html: a generic plan, once custom plans show no gain):
    key lookups and inserts plan the same whatever their values, and planning a
    resource write's statement took 150 µs of the server's CPU each time."""

    @event.listens_for(engine, "do_execute")
    def _execute_unnamed(cursor: Any, statement: str, parameters: Any, _context: Any) -> bool:
        cursor.execute(statement, parameters, prepare=False)
        return True


def _configure_sqlite(engine: Engine) -> None:
    """Own the transaction boundaries of pysqlite (SQLAlchemy sqlite dialect docs,
    "Serializable isolation / Savepoints / Transactional DDL")."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        apply_sqlite_pragmas(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Straight on the driver: BEGIN has no parameters and no result, and SQLAlchemy's
        # statement execution (events, result set-up) cost more than the statement.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE" if conn.info.get(WRITE_FLAG) else "BEGIN")
