"""``silta demo`` (gateway/demo.py) run in process: the notification goes in over
X-Road, the Task is worked over FHIR, and each status change reaches Kela's loopback
security server as a NotificationFeedback."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import typer

from adapters.xroad.outbound import GATEWAY_CLIENT_VARIABLE
from gateway.demo import demo


def _section(output: str, start: str, end: str) -> str:
    return output.split(start, 1)[1].split(end, 1)[0]


def _table_rows(section: str) -> list[list[str]]:
    """The cells of each body row of the rich tables in ``section``."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in section.splitlines()
        if line.startswith("│")
    ]


def test_the_feedback_of_each_task_change_reaches_kela(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(GATEWAY_CLIENT_VARIABLE, raising=False)
    database = tmp_path / "demo.db"
    demo(database=f"sqlite:///{database}")
    output = capsys.readouterr().out
    sent = _section(output, "Kela sends a concern notification", "Pirkanmaa works the Task")
    assert "ReceiptStatus" in sent and "accepted" in sent
    assert "kela-cn-" in sent
    feedback = _section(output, "The feedback reaches Kela", "What Kela sees")
    rows = _table_rows(feedback)
    assert [row[1] for row in rows] == ["NotificationFeedback"] * 3
    assert [row[2] for row in rows] == ["accepted", "in-progress", "completed"]
    assert rows[1][3] == "client-contacted"
    assert len({row[4] for row in rows}) == 3  # one message id per change
    extract = _section(output, "access-log extract", "Done")
    assert "pirha-demo" in extract and "1301/2014 §35" in extract
    assert f"stays in sqlite:///{database}" in output
    # The process environment is as it was.
    assert GATEWAY_CLIENT_VARIABLE not in os.environ


def test_a_database_with_data_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "used.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE note (text TEXT)")
        conn.execute("INSERT INTO note VALUES ('kept')")
    with pytest.raises(typer.Exit):
        demo(database=str(database))
    assert "already holds data" in capsys.readouterr().out
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT text FROM note").fetchall() == [("kept",)]
