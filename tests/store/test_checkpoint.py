"""SQLite's WAL is checkpointed by a thread of the gateway's, not inside commits."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.store import checkpoint
from gateway.store.checkpoint import WalCheckpointer
from gateway.store.database import Database
from gateway.store.migrate import upgrade


def _in_database_file(path: Path, sql: str) -> int:
    """Counts rows in the database file alone, the log left out (``immutable``)."""
    connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(connection.execute(sql).fetchone()[0])
    finally:
        connection.close()


def _table_in_file(path: Path, table: str) -> int:
    try:
        return _in_database_file(path, f"SELECT count(*) FROM {table}")
    except sqlite3.OperationalError:  # not in the file yet
        return -1


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_committed_pages_reach_the_database_file_without_a_commit_checkpointing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_INTERVAL_SECONDS", 0.05)
    path = tmp_path / "silta.db"
    db = Database(f"sqlite:///{path}")
    try:
        upgrade(db.engine)
        with db.write() as conn:
            conn.execute(text("CREATE TABLE probe (n INTEGER)"))
            conn.execute(text("INSERT INTO probe (n) VALUES (1), (2), (3)"))
        # Far below wal_autocheckpoint: only the gateway's thread copies the pages over.
        assert _wait_for(lambda: _table_in_file(path, "probe") == 3)
    finally:
        db.dispose()


def test_the_thread_stops_with_the_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'silta.db'}")
    checkpointer = db._checkpointer
    assert checkpointer is not None and checkpointer.running
    db.dispose()
    assert not checkpointer.running


def test_an_in_memory_database_has_no_checkpoint_thread() -> None:
    db = Database("sqlite://")
    try:
        assert db._checkpointer is None
    finally:
        db.dispose()


def test_a_failed_checkpoint_is_reported_and_does_not_stop_the_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = sqlite3.connect(":memory:")
    closed.close()
    with caplog.at_level("ERROR"):
        assert WalCheckpointer.checkpoint(closed) is None
    assert "a WAL checkpoint failed" in caplog.text
