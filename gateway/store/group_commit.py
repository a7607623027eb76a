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
when ``max_members`` writers have had their turn in it (failed ones included, so
writers that keep failing, e.g. on a stale ``If-Match``, cannot keep a group open), so
a lone writer commits at once.

Requests served inline on the asyncio event loop never queue on the turn: each runs
to its end before the next starts. Inside :func:`deferred_commits` a writer on the
loop therefore does not wait for the commit: it leaves the transaction open for the
requests the loop runs next and awaits :meth:`CommitWaiter.wait` before it answers.
The loop ends the group once a full pass over its ready requests added no writer
(or the group is full), so one commit serves every write request of that burst. The
``COMMIT`` of a group of several writers, the writing of their pages to the log, then
runs on a committer thread (the driver runs it without the interpreter lock), holding
the turn until it is done: the loop meanwhile reads and parses the next requests, whose
writes first await :meth:`GroupCommit.turn_free` instead of blocking the loop on the
turn. A lone writer's group is committed on the loop.

PostgreSQL runs many write transactions at once, each holding its row and advisory locks
until it commits, so its writers are not grouped. There a commit's cost is the wait for
the WAL flush; inside :func:`deferred_commits` on the event loop,
:class:`BackgroundCommits` runs each transaction's ``COMMIT`` on a worker thread (the
driver waits without the interpreter lock) while the loop serves the next requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, RootTransaction

log = logging.getLogger(__name__)

WRITE_FLAG = "write"
"""Set in ``Connection.info`` while a connection holds a write transaction (SQLite then
begins it with ``BEGIN IMMEDIATE``)."""


class GroupCommitFailed(RuntimeError):
    """A transaction committed after its writer returned (a shared SQLite one, or a
    PostgreSQL one committed in the background) failed; none of its writes were stored."""


class CommitWaiter:
    """The commits a request's deferred writes wait for (see :func:`deferred_commits`)."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []
        # Commits of this request running on BackgroundCommits' threads.
        self.background: list[Future[None]] = []

    def settle_background(self) -> None:
        """Blocks until this request's background commits are done, so that its next
        transaction sees its earlier writes (a failure is reported by ``wait()``)."""
        for done in self.background:
            with contextlib.suppress(GroupCommitFailed):
                done.result()

    async def wait(self) -> None:
        """Returns when every write of the request is committed; raises
        GroupCommitFailed if one of them could not be."""
        for future in self.pending:
            await future

    def when_settled(self, callback: Callable[[bool], None]) -> None:
        """Calls ``callback(committed)`` once every pending commit has settled (at once
        when none is pending); ``committed`` is False if one of them failed."""
        pending = list(self.pending)
        if not pending:
            callback(True)
            return
        remaining = len(pending)

        def settled(_future: asyncio.Future[None]) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                callback(all(not f.cancelled() and f.exception() is None for f in pending))

        for future in pending:
            future.add_done_callback(settled)


_DEFERRING: ContextVar[CommitWaiter | None] = ContextVar("deferred_commit", default=None)


def commit_waiter() -> CommitWaiter | None:
    """The waiter of the enclosing :func:`deferred_commits` block, if any."""
    return _DEFERRING.get()


@contextmanager
def deferred_commits() -> Iterator[CommitWaiter]:
    """Lets the writes made inside on the event loop return before their commit;
    the caller must await ``CommitWaiter.wait()`` before reporting them."""
    waiter = CommitWaiter()
    token = _DEFERRING.set(waiter)
    try:
        yield waiter
    finally:
        _DEFERRING.reset(token)


MEMBER_SAVEPOINT = "group_member"

MAX_PASSES = 64
"""Most event-loop passes a deferred group waits for more writers before it commits."""


class _Group:
    """One shared write transaction and the outcome its members wait for."""

    __slots__ = (
        "broken",
        "committed",
        "connection",
        "driver",
        "error",
        "futures",
        "members",
        "scheduled",
        "transaction",
        "turns",
    )

    def __init__(self, engine: Engine) -> None:
        self.connection = engine.connect()
        self.connection.info[WRITE_FLAG] = True
        self.driver: Any = self.connection.connection.driver_connection
        self.transaction: RootTransaction = self.connection.begin()
        self.members = 0  # writers whose work is in the transaction
        self.turns = 0  # writers that have had their turn, failed ones included
        self.broken = False
        self.committed = threading.Event()
        self.error: BaseException | None = None
        # Deferred members on an event loop, settled when the group ends.
        self.futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.scheduled = False

    def savepoint(self, verb: str) -> None:
        """``SAVEPOINT`` / ``RELEASE`` / ``ROLLBACK TO`` the member savepoint, on the
        driver connection (a member's savepoint is this module's own business; the
        SQLAlchemy nested-transaction bookkeeping costs more than the statement)."""
        self.driver.execute(f"{verb} {MEMBER_SAVEPOINT}")


class GroupCommit:
    """Hands one open write transaction from writer to writer (leader/follower)."""

    def __init__(self, engine: Engine, *, max_members: int = 32) -> None:
        self._engine = engine
        self._max_members = max_members
        self._turn = threading.Lock()  # held while a writer works on the connection
        self._count = threading.Lock()  # guards _waiting
        self._waiting = 0
        self._group: _Group | None = None
        # Groups ended on an event loop are committed on this thread, one at a time.
        self._committer: ThreadPoolExecutor | None = None
        self._committing: Future[None] | None = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction shared with the writers queued beside this one."""
        self._take_turn()
        try:
            group = self._group
            if group is None:
                group = self._group = _Group(self._engine)
            group.turns += 1
            # The first writer of a group needs no savepoint: if it fails, the whole
            # transaction is rolled back and the next writer starts a new one.
            savepoint = group.members > 0
            if savepoint:
                group.savepoint("SAVEPOINT")
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
            if savepoint:
                group.savepoint("RELEASE")
            group.members += 1
        except BaseException:
            group.broken = True
            self._end_turn(group)
            raise
        if self._defer(group):
            return
        self._end_turn(group)
        group.committed.wait()
        if group.error is not None:
            raise _failed(group.error)

    def _defer(self, group: _Group) -> bool:
        """In :func:`deferred_commits` on an event loop: leaves the group open, makes
        sure the loop commits it, and frees the turn. False elsewhere."""
        waiter = _DEFERRING.get()
        loop = _running_loop() if waiter is not None else None
        if waiter is None or loop is None:  # on a worker thread: wait for the commit
            return False
        future: asyncio.Future[None] = loop.create_future()
        group.futures.append((loop, future))
        waiter.pending.append(future)
        if group.turns >= self._max_members:
            self._commit_in_background(group)
            return True
        if not group.scheduled:
            group.scheduled = True
            loop.call_soon(self._commit_when_idle, group, group.turns, 1)
        self._turn.release()
        return True

    def _commit_when_idle(self, group: _Group, turns: int, passes: int) -> None:
        """Event-loop callback: commits ``group`` once a pass over the loop's ready
        work added no writer to it (or after MAX_PASSES passes)."""
        if self._group is not group:
            return  # another writer has ended it already
        if group.turns > turns and passes < MAX_PASSES:
            loop = asyncio.get_running_loop()
            loop.call_soon(self._commit_when_idle, group, group.turns, passes + 1)
            return
        self._take_turn()
        if self._group is not group:
            self._turn.release()
        elif group.members > 1:
            self._commit_in_background(group)
        else:
            # A lone writer has no other request to overlap its commit with; handing
            # it to the thread would only add two thread wake-ups to its answer.
            self._commit(group)

    def _commit_in_background(self, group: _Group) -> None:
        """Ends ``group`` (the caller holds the turn) and commits it on the committer
        thread, which frees the turn when the commit is done."""
        self._group = None
        if self._committer is None:
            self._committer = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="silta-group-commit"
            )
        self._committing = self._committer.submit(self._settle, group)

    async def turn_free(self) -> None:
        """Returns once no group is being committed on the committer thread, so that a
        writer on the event loop can take the turn without blocking the loop."""
        while (committing := self._committing) is not None and not committing.done():
            await asyncio.wrap_future(committing)

    def shutdown(self) -> None:
        """Waits for the commit under way, if any."""
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.shutdown(wait=True)

    def _take_turn(self) -> None:
        """Waits for the turn, counted among the waiting while it does (a writer ending
        its turn passes the transaction on only to a waiting one)."""
        with self._count:
            self._waiting += 1
        self._turn.acquire()
        with self._count:
            self._waiting -= 1

    @staticmethod
    def _undo(group: _Group, savepoint: bool) -> None:
        """Takes a failed writer's work back out of the group's transaction."""
        if not savepoint:
            # The group's first writer: the transaction holds nobody else's work and
            # is rolled back as a whole.
            group.broken = True
            return
        try:
            group.savepoint("ROLLBACK TO")
            group.savepoint("RELEASE")
        except BaseException:
            group.broken = True

    def _end_turn(self, group: _Group) -> None:
        """Passes the open transaction on to a waiting writer, or commits it."""
        with self._count:
            pass_on = not group.broken and self._waiting > 0 and group.turns < self._max_members
        if pass_on:
            self._turn.release()
            return
        self._commit(group)

    def _commit(self, group: _Group) -> None:
        """Ends the group (the caller holds the turn) and settles it."""
        self._group = None
        self._settle(group)

    def _settle(self, group: _Group) -> None:
        """Commits an ended group, or rolls it back when a failed writer broke it;
        frees the turn."""
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
            group.connection.info.pop(WRITE_FLAG, None)
            if group.error is not None:
                group.connection.invalidate()
            group.connection.close()
        except Exception:
            log.exception("closing the connection of a group commit failed")
        finally:
            group.committed.set()
            self._turn.release()
            here = _running_loop()
            for loop, future in group.futures:
                if loop is here:  # committed on the members' own loop: no wake-up needed
                    _settle(future, group.error)
                elif not loop.is_closed():  # a loop that has stopped awaits nothing
                    loop.call_soon_threadsafe(_settle, future, group.error)


def _failed(error: BaseException) -> GroupCommitFailed:
    failed = GroupCommitFailed(f"the write could not be committed: {error}")
    failed.__cause__ = error
    return failed


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(_failed(error))


class BackgroundCommits:
    """PostgreSQL write transactions whose ``COMMIT`` runs on a worker thread when they
    were made inline on the event loop inside :func:`deferred_commits`; elsewhere a
    plain transaction, committed before ``write()`` returns."""

    def __init__(self, engine: Engine, *, threads: int) -> None:
        self._engine = engine
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="silta-commit")

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: rolled back on any exception, committed (or handed to a
        commit thread) on success."""
        waiter = _DEFERRING.get()
        loop = _running_loop() if waiter is not None else None
        if waiter is None or loop is None:
            with self._engine.connect() as conn, conn.begin():
                yield conn
            return
        waiter.settle_background()
        conn = self._engine.connect()
        try:
            transaction = conn.begin()
            yield conn
        except BaseException:
            conn.close()  # rolls the transaction back
            raise
        done = self._executor.submit(_commit_and_close, conn, transaction)
        waiter.background.append(done)
        waiter.pending.append(asyncio.wrap_future(done, loop=loop))

    def shutdown(self) -> None:
        """Waits for the commits under way; no new ones are taken."""
        self._executor.shutdown(wait=True)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a worker thread
        return None


def _commit_and_close(conn: Connection, transaction: RootTransaction) -> None:
    """Commits on a worker thread; a failed commit discards the connection (its state
    is unknown) and raises GroupCommitFailed."""
    try:
        transaction.commit()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.invalidate()
        raise _failed(exc) from exc
    finally:
        conn.close()
