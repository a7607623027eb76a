"""Group commit of SQLite writers: shared transactions, each writer still all or nothing."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, event, text

from gateway.store.database import apply_sqlite_pragmas
from gateway.store.group_commit import (
    BackgroundCommits,
    GroupCommit,
    GroupCommitFailed,
    deferred_commits,
)
from tests.conftest import POSTGRES_URL


@pytest.fixture
def engine_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'group.db'}"


@pytest.fixture
def writers(engine_url: str) -> Iterator[tuple[GroupCommit, list[int]]]:
    """A GroupCommit over a table ``t(n)``, and the list of commits the engine made
    (the number of writers that were stored with each)."""
    engine = create_engine(engine_url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: object, _record: object) -> None:
        apply_sqlite_pragmas(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    commits: list[int] = []

    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        commits.append(conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one())

    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    commits.clear()
    group = GroupCommit(engine, max_members=8)
    yield group, commits
    group.shutdown()
    engine.dispose()


def stored(url: str) -> set[int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT n FROM t"))}
    finally:
        engine.dispose()


def run_queued(
    group: GroupCommit, work: dict[int, Callable[[Connection], None]]
) -> dict[int, BaseException | None]:
    """Runs one writer per key; the first one holds its turn until all others queue,
    so they all meet in one group (within max_members)."""
    first, *others = sorted(work)
    outcomes: dict[int, BaseException | None] = {}
    queued = threading.Event()

    def writer(key: int) -> None:
        try:
            with group.write() as conn:
                if key == first:
                    assert queued.wait(10)
                work[key](conn)
            outcomes[key] = None
        except BaseException as exc:
            outcomes[key] = exc

    threads = [threading.Thread(target=writer, args=(first,))]
    threads[0].start()
    time.sleep(0.05)
    threads += [threading.Thread(target=writer, args=(key,)) for key in others]
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while group._waiting < len(others) and time.monotonic() < deadline:
        time.sleep(0.005)
    queued.set()
    for thread in threads:
        thread.join(10)
    return outcomes


def insert(n: int) -> Callable[[Connection], None]:
    def work(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})

    return work


def insert_then_fail(n: int) -> Callable[[Connection], None]:
    def work(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
        raise ValueError(f"writer {n} fails")

    return work


def test_queued_writers_share_one_commit(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, commits = writers
    outcomes = run_queued(group, {n: insert(n) for n in range(6)})
    assert outcomes == dict.fromkeys(range(6))
    assert stored(engine_url) == set(range(6))
    assert commits == [6]


def test_a_group_holds_at_most_max_members(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, commits = writers
    outcomes = run_queued(group, {n: insert(n) for n in range(12)})
    assert all(outcome is None for outcome in outcomes.values())
    assert stored(engine_url) == set(range(12))
    assert len(commits) >= 2 and commits[0] == 8


@pytest.mark.parametrize("failing", [0, 2], ids=["first writer", "later writer"])
def test_a_failing_writer_is_rolled_back_alone(
    writers: tuple[GroupCommit, list[int]], engine_url: str, failing: int
) -> None:
    """The group's first writer has no savepoint (its failure ends the transaction);
    a later one is rolled back to its savepoint inside the group."""
    group, commits = writers
    work = {n: insert(n) for n in range(5)}
    work[failing] = insert_then_fail(failing)
    outcomes = run_queued(group, work)
    assert isinstance(outcomes[failing], ValueError)
    others = set(range(5)) - {failing}
    assert {n for n, outcome in outcomes.items() if outcome is None} == others
    assert stored(engine_url) == others
    assert commits[-1] == 4


def test_a_failed_commit_fails_every_writer_of_the_group(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, _commits = writers
    engine = group._engine

    def refuse(_conn: Connection) -> None:
        raise OSError("disk full")

    event.listen(engine, "commit", refuse)
    outcomes = run_queued(group, {n: insert(n) for n in range(4)})
    event.remove(engine, "commit", refuse)
    assert all(isinstance(outcome, GroupCommitFailed) for outcome in outcomes.values()), outcomes
    assert stored(engine_url) == set()
    # The next writer starts a fresh transaction.
    with group.write() as conn:
        insert(9)(conn)
    assert stored(engine_url) == {9}


def test_a_writer_returns_only_after_its_work_is_committed(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, _commits = writers
    seen: dict[int, bool] = {}

    def writer(n: int) -> None:
        with group.write() as conn:
            insert(n)(conn)
        seen[n] = n in stored(engine_url)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == dict.fromkeys(range(8), True)


def test_a_lone_writer_commits_at_once(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, commits = writers
    with group.write() as conn:
        insert(1)(conn)
    assert commits == [1]
    with pytest.raises(ValueError, match="writer 2 fails"), group.write() as conn:
        insert_then_fail(2)(conn)
    assert stored(engine_url) == {1}


async def deferred_writer(
    group: GroupCommit, work: Callable[[Connection], None]
) -> BaseException | None:
    """An inline request on the event loop: writes without waiting, then awaits the commit."""
    await asyncio.sleep(0)
    try:
        with deferred_commits() as commits, group.write() as conn:
            work(conn)
        await commits.wait()
    except BaseException as exc:
        return exc
    return None


def run_on_loop(group: GroupCommit, work: list[Callable[[Connection], None]]) -> list[object]:
    async def main() -> list[object]:
        return list(await asyncio.gather(*(deferred_writer(group, w) for w in work)))

    return asyncio.run(main())


def test_inline_requests_on_the_event_loop_share_one_commit(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, commits = writers
    outcomes = run_on_loop(group, [insert(n) for n in range(10)])
    assert outcomes == [None] * 10
    assert stored(engine_url) == set(range(10))
    assert commits == [8, 10]  # max_members of the fixture is 8


def test_a_lone_inline_request_is_committed_before_it_answers(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, commits = writers

    async def main() -> bool:
        with deferred_commits() as waiter, group.write() as conn:
            insert(1)(conn)
        assert 1 not in stored(engine_url)  # not committed yet: the answer must wait
        await waiter.wait()
        return 1 in stored(engine_url)

    assert asyncio.run(main())
    assert commits == [1]


def test_a_failing_inline_request_leaves_the_others_stored(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, _commits = writers
    work = [insert(n) for n in range(5)]
    work[0] = insert_then_fail(0)
    work[3] = insert_then_fail(3)
    outcomes = run_on_loop(group, work)
    assert [type(o).__name__ for o in outcomes] == [
        "ValueError",
        "NoneType",
        "NoneType",
        "ValueError",
        "NoneType",
    ]
    assert stored(engine_url) == {1, 2, 4}


def test_a_failed_deferred_commit_fails_every_inline_request(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, _commits = writers

    def refuse(_conn: Connection) -> None:
        raise OSError("disk full")

    event.listen(group._engine, "commit", refuse)
    outcomes = run_on_loop(group, [insert(n) for n in range(4)])
    event.remove(group._engine, "commit", refuse)
    assert all(isinstance(outcome, GroupCommitFailed) for outcome in outcomes), outcomes
    assert stored(engine_url) == set()


def test_threads_and_inline_requests_share_groups(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, _commits = writers
    threads = [
        threading.Thread(target=lambda n=n: _thread_write(group, n)) for n in range(100, 106)
    ]
    for thread in threads:
        thread.start()
    outcomes = run_on_loop(group, [insert(n) for n in range(20)])
    for thread in threads:
        thread.join(10)
    assert outcomes == [None] * 20
    assert stored(engine_url) == set(range(20)) | set(range(100, 106))


def _thread_write(group: GroupCommit, n: int) -> None:
    with group.write() as conn:
        insert(n)(conn)


def test_writers_that_keep_failing_cannot_keep_a_group_open(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    """Writers retrying until they see a committed row (as clients retry on a stale
    If-Match) fail inside the group that holds it; the group still commits after
    max_members turns, so they soon see it."""
    group, _commits = writers
    attempts: dict[int, int] = {}
    started = threading.Barrier(5)

    def watcher(n: int) -> None:
        reader = sqlite3.connect(engine_url.removeprefix("sqlite:///"))
        started.wait(10)
        tries = 0
        while not reader.execute("SELECT 1 FROM t WHERE n = 0").fetchone() and tries < 2000:
            tries += 1
            with contextlib.suppress(ValueError), group.write() as conn:
                insert_then_fail(1000 + n)(conn)
        reader.close()
        attempts[n] = tries

    threads = [threading.Thread(target=watcher, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    started.wait(10)
    with group.write() as conn:
        insert(0)(conn)
    for thread in threads:
        thread.join(30)
    assert stored(engine_url) == {0}
    assert all(tries < 100 for tries in attempts.values()), attempts


def test_the_event_loop_runs_on_while_a_group_commits(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    """The COMMIT of a group ended on the loop runs on the committer thread: here it
    can only finish once a coroutine on the loop has run."""
    group, commits = writers
    loop_ran = threading.Event()
    commit_saw_loop: list[bool] = []

    def slow_commit(_conn: Connection) -> None:
        commit_saw_loop.append(loop_ran.wait(5))

    event.listen(group._engine, "commit", slow_commit)

    async def main() -> None:
        with deferred_commits() as waiter:
            for n in (1, 2):
                with group.write() as conn:
                    insert(n)(conn)
        committed = asyncio.ensure_future(waiter.wait())
        # The loop ends the group after this pass; should it commit the group itself,
        # the commit finishes (without seeing the loop) and the assertion below fails.
        while group._committing is None and not committed.done():
            await asyncio.sleep(0)
        loop_ran.set()
        await committed

    asyncio.run(main())
    event.remove(group._engine, "commit", slow_commit)
    assert commit_saw_loop == [True]
    assert stored(engine_url) == {1, 2}
    assert commits == [2]


def test_a_lone_writers_group_is_committed_on_the_loop(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    """With no other request to overlap, the hand-off to the thread would only delay it."""
    group, commits = writers
    committed_on: list[str] = []

    def record_thread(_conn: Connection) -> None:
        committed_on.append(threading.current_thread().name)

    event.listen(group._engine, "commit", record_thread)

    async def main() -> None:
        with deferred_commits() as waiter, group.write() as conn:
            insert(1)(conn)
        await waiter.wait()

    asyncio.run(main())
    event.remove(group._engine, "commit", record_thread)
    assert committed_on == [threading.main_thread().name]
    assert stored(engine_url) == {1}
    assert commits == [1]


def test_a_write_during_a_commit_awaits_it_and_starts_the_next_group(
    writers: tuple[GroupCommit, list[int]], engine_url: str
) -> None:
    group, commits = writers
    committing = threading.Event()
    release = threading.Event()

    def held_commit(_conn: Connection) -> None:
        committing.set()
        release.wait(5)

    event.listen(group._engine, "commit", held_commit)

    async def second_writer() -> None:
        await group.turn_free()
        with deferred_commits() as waiter, group.write() as conn:
            insert(2)(conn)
        await waiter.wait()

    async def main() -> None:
        with deferred_commits() as first:
            for n in (1, 3):
                with group.write() as conn:
                    insert(n)(conn)
        assert await asyncio.to_thread(committing.wait, 5)
        second = asyncio.ensure_future(second_writer())
        await asyncio.sleep(0.05)
        assert not second.done()  # waiting for the first group's commit, loop free
        release.set()
        await first.wait()
        await second

    asyncio.run(main())
    event.remove(group._engine, "commit", held_commit)
    assert stored(engine_url) == {1, 2, 3}
    assert commits == [2, 3]


# -- PostgreSQL: commits of inline requests on worker threads ----------------------


@pytest.fixture
def background(postgres_database_url: str) -> Iterator[tuple[BackgroundCommits, str]]:
    """BackgroundCommits over a table ``bg(n)`` whose key is checked at commit."""
    engine = create_engine(postgres_database_url)
    table = f"bg_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(
            text(f"CREATE TABLE {table} (n INTEGER PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)")
        )
    commits = BackgroundCommits(engine, threads=2)
    try:
        yield commits, table
    finally:
        commits.shutdown()
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {table}"))
        engine.dispose()


def pg_stored(commits: BackgroundCommits, table: str) -> set[int]:
    with commits._engine.connect() as conn:
        return {row[0] for row in conn.execute(text(f"SELECT n FROM {table}"))}


@pytest.mark.skipif(not POSTGRES_URL, reason="SILTA_TEST_DATABASE_URL is not set")
def test_an_inline_postgresql_write_is_committed_on_a_worker_before_it_answers(
    background: tuple[BackgroundCommits, str],
) -> None:
    commits, table = background
    release = threading.Event()

    @event.listens_for(commits._engine, "commit")
    def _hold(conn: Connection) -> None:
        assert threading.current_thread() is not threading.main_thread()
        assert release.wait(10)

    async def main() -> bool:
        with deferred_commits() as waiter, commits.write() as conn:
            conn.execute(text(f"INSERT INTO {table} (n) VALUES (1)"))
        assert pg_stored(commits, table) == set()  # the commit waits on its thread
        release.set()
        await waiter.wait()
        return pg_stored(commits, table) == {1}

    try:
        assert asyncio.run(main())
    finally:
        event.remove(commits._engine, "commit", _hold)


@pytest.mark.skipif(not POSTGRES_URL, reason="SILTA_TEST_DATABASE_URL is not set")
def test_a_failed_background_commit_fails_the_request_and_stores_nothing(
    background: tuple[BackgroundCommits, str],
) -> None:
    commits, table = background

    async def main() -> BaseException | None:
        with deferred_commits() as waiter, commits.write() as conn:
            # The duplicate key is found only by the COMMIT (a deferred constraint).
            conn.execute(text(f"INSERT INTO {table} (n) VALUES (1), (1)"))
        try:
            await waiter.wait()
        except GroupCommitFailed as exc:
            return exc
        return None

    assert isinstance(asyncio.run(main()), GroupCommitFailed)
    assert pg_stored(commits, table) == set()


@pytest.mark.skipif(not POSTGRES_URL, reason="SILTA_TEST_DATABASE_URL is not set")
def test_the_next_write_of_a_request_sees_its_earlier_writes(
    background: tuple[BackgroundCommits, str],
) -> None:
    commits, table = background

    async def main() -> int:
        with deferred_commits() as waiter:
            with commits.write() as conn:
                conn.execute(text(f"INSERT INTO {table} (n) VALUES (1)"))
            with commits.write() as conn:
                seen = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                conn.execute(text(f"INSERT INTO {table} (n) VALUES (2)"))
        await waiter.wait()
        return int(seen)

    assert asyncio.run(main()) == 1
    assert pg_stored(commits, table) == {1, 2}


@pytest.mark.skipif(not POSTGRES_URL, reason="SILTA_TEST_DATABASE_URL is not set")
def test_a_failing_inline_postgresql_write_is_rolled_back_and_not_awaited(
    background: tuple[BackgroundCommits, str],
) -> None:
    commits, table = background

    async def main() -> int:
        with deferred_commits() as waiter, pytest.raises(ValueError), commits.write() as conn:
            conn.execute(text(f"INSERT INTO {table} (n) VALUES (1)"))
            raise ValueError("the request fails")
        await waiter.wait()
        return len(waiter.pending)

    assert asyncio.run(main()) == 0
    assert pg_stored(commits, table) == set()


@pytest.mark.skipif(not POSTGRES_URL, reason="SILTA_TEST_DATABASE_URL is not set")
def test_a_postgresql_write_off_the_loop_is_committed_before_it_returns(
    background: tuple[BackgroundCommits, str],
) -> None:
    commits, table = background
    with deferred_commits() as waiter, commits.write() as conn:
        conn.execute(text(f"INSERT INTO {table} (n) VALUES (1)"))
    assert waiter.pending == []
    assert pg_stored(commits, table) == {1}
