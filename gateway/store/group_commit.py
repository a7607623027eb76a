"""Group commit for SQLite's single writer.

SQLite runs one write transaction at a time, and a commit costs in proportion to the
pages it writes to the WAL (sqlite.org/wal.html §2): every B-tree page an insert
touches is written again at each commit. When writers queue, this module lets them
share one transaction: each writer runs its work in its own SAVEPOINT
(sqlite.org/lang_savepoint.html) on the open connection, in turn, and the last of the
group commits for all of them. Pages touched by several writers (table tails, index
leaves) are then written once.

Each writer's ``write()`` returns only after the transaction holding its work has
committed, so a caller never reports a change that could still be lost. A writer whose
work fails is rolled back to its savepoint and gets its own exception; the others are
unaffected. Should the commit itself fail, every writer of the group gets the error
and nothing of the group is stored. A group ends when no other writer is waiting or
when it has ``max_members`` writers, so a lone writer commits at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, NestedTransaction, RootTransaction

log = logging.getLogger(__name__)

WRITE_FLAG = "write"
"""Set in ``Connection.info`` while a connection holds a write transaction (SQLite then
begins it with ``BEGIN IMMEDIATE``)."""


class GroupCommitFailed(RuntimeError):
    """The shared transaction could not be committed; none of its writes were stored."""


class _Group:
    """One shared write transaction and the outcome its members wait for."""

    __slots__ = ("broken", "committed", "connection", "error", "members", "transaction")

    def __init__(self, engine: Engine) -> None:
        self.connection = engine.connect()
        self.connection.info[WRITE_FLAG] = True
        self.transaction: RootTransaction = self.connection.begin()
        self.members = 0
        self.broken = False
        self.committed = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    """Hands one open write transaction from writer to writer (leader/follower)."""

    def __init__(self, engine: Engine, *, max_members: int = 32) -> None:
        self._engine = engine
        self._max_members = max_members
        self._turn = threading.Lock()  # held while a writer works on the connection
        self._count = threading.Lock()  # guards _waiting
        self._waiting = 0
        self._group: _Group | None = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction shared with the writers queued beside this one."""
        with self._count:
            self._waiting += 1
        self._turn.acquire()
        with self._count:
            self._waiting -= 1
        try:
            group = self._group
            if group is None:
                group = self._group = _Group(self._engine)
            # The first writer of a group needs no savepoint: if it fails, the whole
            # transaction is rolled back and the next writer starts a new one.
            savepoint = group.connection.begin_nested() if group.members else None
        except BaseException:
            if self._group is not None:
                self._group.broken = True
                self._end_turn(self._group)
            else:
                self._turn.release()
            raise
        try:
            yield group.connection
        except BaseException:
            self._undo(group, savepoint)
            self._end_turn(group)
            raise
        try:
            if savepoint is not None:
                savepoint.commit()
            group.members += 1
        except BaseException:
            group.broken = True
            self._end_turn(group)
            raise
        self._end_turn(group)
        group.committed.wait()
        if group.error is not None:
            raise GroupCommitFailed(
                f"the write could not be committed: {group.error}"
            ) from group.error

    @staticmethod
    def _undo(group: _Group, savepoint: NestedTransaction | None) -> None:
        """Takes a failed writer's work back out of the group's transaction."""
        if savepoint is None or not savepoint.is_active:
            # No savepoint to return to: the transaction holds nobody else's work
            # (or cannot be trusted) and is rolled back as a whole.
            group.broken = True
            return
        try:
            savepoint.rollback()
        except BaseException:
            group.broken = True

    def _end_turn(self, group: _Group) -> None:
        """Passes the open transaction on to a waiting writer, or commits it."""
        with self._count:
            pass_on = not group.broken and self._waiting > 0 and group.members < self._max_members
        if pass_on:
            self._turn.release()
            return
        self._group = None
        try:
            if group.broken:
                group.error = RuntimeError("a failed write left the shared transaction unusable")
                group.transaction.rollback()
            else:
                group.transaction.commit()
        except BaseException as exc:
            group.error = group.error or exc
        finally:
            self._release(group)

    def _release(self, group: _Group) -> None:
        """Returns the connection (discarded when its transaction failed: its state is
        unknown), wakes the group's writers and frees the turn."""
        try:
            if group.error is not None:
                group.connection.invalidate()
            group.connection.info.pop(WRITE_FLAG, None)
            group.connection.close()
        except Exception:
            log.exception("closing the connection of a group commit failed")
        finally:
            group.committed.set()
            self._turn.release()
