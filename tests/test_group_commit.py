"""Group commit: callbacks arriving together share one commit, each answered only after it.

On the real store (SQLite here; tests/postgres runs the same tests on PostgreSQL) and, for the
endpoint, the real server with its threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, closing
from typing import Any

import pytest
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from tests.conftest import new_order, post_callback
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.store.group_commit import GroupCommit
from utopia_handler.store.models import Callback, Order
from utopia_handler.timeutil import utcnow

REFS = [f"UIA202611-{7000 + n:06d}" for n in range(40)]


@pytest.fixture
def busy_runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """One sender may send as fast as it likes: the per-source limit is not tested here."""
    return make_runtime(CALLBACK_RATE_LIMIT="1000000", CALLBACK_RATE_BURST="1000000")


@pytest.fixture
def web(busy_runtime: Runtime) -> Iterator[ServiceHandle]:
    """The web side alone (waitress threads), so nothing but callbacks writes."""
    runtime = busy_runtime
    handle = ServiceHandle(runtime, worker=False, port=0).start()
    try:
        yield handle
    finally:
        handle.stop()


def stored_refs(runtime: Runtime) -> list[str]:
    with runtime.store.read() as session:
        return list(session.scalars(select(Order.order_ref).order_by(Order.order_ref)))


def insert_order(ref: str) -> Callable[[Connection], str]:
    """A write that records an order row (by its own SQL, as a callback's write would)."""

    def write(connection: Connection) -> str:
        now = utcnow()
        connection.execute(
            text(
                "INSERT INTO orders (order_ref, state, step, created_at, updated_at, "
                "next_attempt_at, run, step_attempts, customer_created, shadow) VALUES "
                "(:ref, 'received', 'lookup_contract', :now, :now, :now, 1, 0, false, false)"
            ),
            {"ref": ref, "now": now},
        )
        return ref

    return write


def test_concurrent_callbacks_are_each_answered_once_committed_and_stored_exactly_once(
    web: ServiceHandle, busy_runtime: Runtime
) -> None:
    runtime = busy_runtime
    # Each order sent three times, all at once from 16 connections.
    deliveries = [ref for ref in REFS for _ in range(3)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda ref: post_callback(web.url, new_order(ref)), deliveries))
    assert {a.status_code for a in answers} == {200}
    statuses = Counter((a.json()["orderref"], a.json()["status"]) for a in answers)
    # One delivery of each order queued it; the others were seen as repeats.
    assert statuses == Counter(
        {**{(ref, "queued"): 1 for ref in REFS}, **{(ref, "repeat"): 2 for ref in REFS}}
    )
    assert stored_refs(runtime) == sorted(REFS)
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Callback)) == len(deliveries)
    together = runtime.store._together
    assert together.writes == len(deliveries)


def test_writes_that_arrive_during_a_commit_share_the_next_and_wait_for_it(
    runtime: Runtime,
) -> None:
    store = runtime.store
    inside, release = threading.Event(), threading.Event()

    def first(connection: Connection) -> str:
        result = insert_order(REFS[0])(connection)
        inside.set()
        release.wait(10)  # the first commit is held open while the others arrive
        return result

    answered: list[str] = []

    def submit(write: Callable[[Connection], str]) -> str:
        result = store.write_together(write, wait_seconds=10)
        answered.append(result)
        return result

    with ThreadPoolExecutor(11) as pool:
        leader = pool.submit(submit, first)
        assert inside.wait(10)
        followers = [pool.submit(submit, insert_order(ref)) for ref in REFS[1:11]]
        # Until the first commit ends, nobody is answered and nothing of theirs is stored.
        wait_until(lambda: len(store._together._waiting) == 10)
        assert answered == []
        release.set()
        assert leader.result(10) == REFS[0]
        assert [f.result(10) for f in followers] == REFS[1:11]
    assert stored_refs(runtime) == sorted(REFS[:11])
    # Two commits: the first alone, then the ten that waited for it, together.
    assert (store._together.batches, store._together.writes) == (2, 11)


def test_one_failing_write_in_a_batch_fails_alone_and_the_others_are_stored(
    runtime: Runtime,
) -> None:
    store = runtime.store
    store.write_together(insert_order(REFS[0]), wait_seconds=10)
    inside, release = threading.Event(), threading.Event()

    def holding(connection: Connection) -> str:
        result = insert_order(REFS[1])(connection)
        inside.set()
        release.wait(10)
        return result

    with ThreadPoolExecutor(6) as pool:
        leader = pool.submit(store.write_together, holding, wait_seconds=10)
        assert inside.wait(10)
        # The next batch: four good rows and one that repeats an existing order reference.
        writes = [insert_order(REFS[2]), insert_order(REFS[3]), insert_order(REFS[0])]
        writes += [insert_order(REFS[4]), insert_order(REFS[5])]
        futures = [pool.submit(store.write_together, w, wait_seconds=10) for w in writes]
        wait_until(lambda: len(store._together._waiting) == len(writes))
        release.set()
        assert leader.result(10) == REFS[1]
        outcomes: list[Any] = []
        for future in futures:
            try:
                outcomes.append(future.result(10))
            except IntegrityError:
                outcomes.append("refused")
    assert outcomes == [REFS[2], REFS[3], "refused", REFS[4], REFS[5]]
    assert stored_refs(runtime) == sorted(REFS[:6])


def test_a_write_that_waits_longer_than_allowed_is_refused_and_not_stored(
    runtime: Runtime,
) -> None:
    store = runtime.store
    inside, release = threading.Event(), threading.Event()

    def holding(connection: Connection) -> str:
        result = insert_order(REFS[0])(connection)
        inside.set()
        release.wait(10)
        return result

    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(store.write_together, holding, wait_seconds=10)
        assert inside.wait(10)
        with pytest.raises(OperationalError):
            store.write_together(insert_order(REFS[1]), wait_seconds=0.2)
        release.set()
        assert leader.result(10) == REFS[0]
    assert stored_refs(runtime) == [REFS[0]]
    assert store._together._waiting == []


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not met in time")


def test_a_batch_the_database_does_not_take_fails_together_without_trying_each_again(
    runtime: Runtime,
) -> None:
    store = runtime.store
    opened: list[float | None] = []

    def opener(wait: float | None) -> AbstractContextManager[Connection]:
        opened.append(wait)
        return store.write_connection(wait_seconds=wait)

    together = GroupCommit(opener)
    # Someone else (a backup, an `sqlite3` shell) holds the database's write lock throughout.
    path = store.url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(5) as pool:
            leader = pool.submit(together.run, insert_order(REFS[0]), wait_seconds=1.0)
            wait_until(lambda: len(opened) == 1)
            writes = [insert_order(ref) for ref in REFS[1:5]]
            futures = [pool.submit(together.run, w, wait_seconds=1.5) for w in writes]
            for future in [leader, *futures]:
                with pytest.raises(OperationalError):
                    future.result(30)
        other.execute("ROLLBACK")
    # One try for the first, one for the four that waited: not one per write.
    assert len(opened) == 2
    assert together.writes == 5
    assert stored_refs(runtime) == []
