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
