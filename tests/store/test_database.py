"""The PostgreSQL connection pool: a connection that sat idle is pinged before use and
replaced if its server session is gone; a connection just returned is reused as is."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text

from gateway.store import database as database_module
from gateway.store.database import Database


def _backend_pid(db: Database) -> int:
    with db.read() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def _counted_pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    pings: list[Any] = []
    ping = db.engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counting)
    return pings


def test_an_idle_connection_whose_session_is_gone_is_replaced(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has no server session to lose")
    pid = _backend_pid(database)
    other = create_engine(database.url)
    try:
        with other.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()
    monkeypatch.setattr(database_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    pings = _counted_pings(database, monkeypatch)
    # The ping finds the session gone; the pool connects afresh and the read succeeds.
    assert _backend_pid(database) != pid
    assert len(pings) == 1


def test_a_connection_back_in_the_pool_a_moment_ago_is_not_pinged(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has no server session to lose")
    _backend_pid(database)
    pings = _counted_pings(database, monkeypatch)
    for _ in range(5):
        _backend_pid(database)
    assert pings == []
    monkeypatch.setattr(database_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    _backend_pid(database)
    assert len(pings) == 1


def test_a_raw_read_is_one_statement_and_lends_the_connection_back_as_it_was(
    database: Database,
) -> None:
    """On PostgreSQL a raw read runs in autocommit: no BEGIN before its statement, no
    ROLLBACK after, and no transaction left open, even when the statement fails; the
    pooled connection then begins transactions again for the next writer."""
    if database.is_sqlite:
        pytest.skip("SQLite's raw reads use a reader connection of their own")
    with database.read_raw() as raw:
        row = raw.fetchone_sql("SELECT now() = statement_timestamp()", ())
        assert row is not None and row[0] is True  # no transaction began before it
    with pytest.raises(Exception, match="no_such_table"), database.read_raw() as raw:
        raw.fetchone_sql("SELECT * FROM no_such_table", ())
    with database.read_raw() as raw:
        assert raw.fetchone_sql("SELECT 1", ()) == (1,)
    with database.write() as conn:
        conn.execute(text("SELECT 1"))
        in_transaction = conn.execute(text("SELECT now() = statement_timestamp()")).scalar()
    assert in_transaction is False


def test_reads_on_postgresql_run_each_statement_on_its_own(database: Database) -> None:
    """Under READ COMMITTED every statement has its own snapshot anyway; a read sends
    no BEGIN and no COMMIT around its statements."""
    if database.is_sqlite:
        pytest.skip("SQLite's reads share one transaction over one snapshot")
    with database.read() as conn:
        conn.execute(text("SELECT 1"))
        alone = conn.execute(text("SELECT now() = statement_timestamp()")).scalar()
    assert alone is True


def test_fixed_statements_keep_a_plan_and_compiled_ones_are_planned_for_their_values(
    database: Database,
) -> None:
    """The store's fixed statements on the driver connection are prepared after a few
    runs and then reuse a generic plan; statements that SQLAlchemy compiles (searches)
    go unnamed, so PostgreSQL plans each for its own values and caches nothing."""
    if database.is_sqlite:
        pytest.skip("SQLite has no plan cache of the server's")
    fixed = "SELECT res_id FROM resource WHERE pk = %s"
    prepared = (
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        " WHERE statement = %s"
    )
    with database.read_raw() as raw:
        for pk in range(15):
            raw.fetchone_sql(fixed, (pk,))
        row = raw.fetchone_sql(prepared, (fixed.replace("%s", "$1"),))
    assert row is not None, "the fixed statement was never prepared"
    assert row[1] >= 1  # a generic plan, reused

    compiled = "SELECT res_id FROM resource WHERE pk = :pk AND deleted IS false"
    with database.read() as conn:
        for pk in range(15):
            conn.execute(text(compiled), {"pk": pk})
        driver: Any = conn.connection.driver_connection
        cached = driver.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ("%deleted IS false%",),
        ).fetchall()
    assert cached == []


def test_sqlite_writes_reuse_the_connection_used_last(database: Database) -> None:
    """SQLite discards a connection's page cache once another connection has written:
    the pool lends the connection returned last, so consecutive writes (and the reads
    between them) keep to one connection and its cache."""
    if not database.is_sqlite:
        pytest.skip("PostgreSQL keeps its page cache in the server")
    with database.read(), database.read(), database.read():
        pass  # three connections now wait in the pool
    used = []
    for _ in range(3):
        with database.write() as conn:
            used.append(conn.connection.driver_connection)
        with database.read() as conn:
            used.append(conn.connection.driver_connection)
    assert all(connection is used[0] for connection in used)
