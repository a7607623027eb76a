"""SQLite WAL checkpoints on a thread of their own.

In WAL mode every commit appends the pages it changed to the write-ahead log; a
checkpoint copies them back into the database file (sqlite.org/wal.html §3). By default
the connection whose commit takes the log past ``wal_autocheckpoint`` pages runs the
checkpoint inside that commit, on the event loop of the process. Here a thread runs a
``PASSIVE`` checkpoint every ``interval`` seconds instead: it copies what no reader
still needs without blocking writers or readers (sqlite.org/c3ref/wal_checkpoint_v2.html),
and the driver releases the interpreter lock while it runs, so the copying (page reads
from the log, page writes and the sync of the database file) overlaps the requests'
own work. Once a checkpoint has copied the whole log, the next writer starts it again
from the beginning (wal.html §4), so the log stays near what is written in one interval.
``wal_autocheckpoint`` stays as the backstop should this thread fall behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_SECONDS = 0.25


class WalCheckpointer:
    """A daemon thread that checkpoints one SQLite database's log at an interval."""

    def __init__(self, connect: Callable[[], Any], *, interval: float | None = None) -> None:
        self._connect = connect
        self._interval = CHECKPOINT_INTERVAL_SECONDS if interval is None else interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="silta-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection: Any = None
        try:
            while not self._stopped.wait(self._interval):
                if connection is None:
                    try:
                        connection = self._connect()
                    except Exception:
                        log.exception("the WAL checkpoint thread could not connect")
                        continue
                self.checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    @staticmethod
    def checkpoint(connection: Any) -> tuple[int, int, int] | None:
        """One ``PRAGMA wal_checkpoint(PASSIVE)``: (busy, pages in the log, pages copied),
        or None when it failed (logged; the next interval tries again)."""
        try:
            row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except Exception:
            log.exception("a WAL checkpoint failed")
            return None
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stops the thread after the checkpoint under way, if any."""
        self._stopped.set()
        self._thread.join()
