"""Reconciliation on PostgreSQL: two processes asked at once make one run; a callback committing
the same order in the middle of a run costs that order, not the run; the migration comes and goes;
and the key SQLite tests again, unchanged.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from tests.conftest import load_order
from tests.console.test_migration import reconcile_tables_come_and_go
from tests.postgres.processes import Child, ProcessGroup, command_env

# The key reconciliation tests, run again unchanged on PostgreSQL (this folder's base_env).
from tests.test_reconcile import (  # noqa: F401
    test_a_list_that_cannot_be_read_changes_nothing_and_says_so,
    test_a_missed_order_is_found_and_provisioned_exactly_once,
    test_a_worker_reconciles_once_a_period_whoever_asks,
    test_staff_are_alerted_once_when_the_list_is_not_read_for_too_long,
    test_the_first_run_records_what_utopia_lists_and_provisions_nothing,
    test_two_reconcilers_at_once_only_one_runs,
)
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.seed import MISSED_DEMO_ORDER
from utopia_handler.reconcile import BUSY, JOB, reconcile
from utopia_handler.runtime import Runtime
from utopia_handler.store import jobs, queries
from utopia_handler.store.db import database_url
from utopia_handler.store.models import (
    CallbackOutcome,
    Notification,
    NotificationKind,
    Order,
    OrderState,
    ReconcileRun,
)
from utopia_handler.timeutil import utcnow

MISSED, MISSED_CONTRACT = MISSED_DEMO_ORDER


def count(runtime: Runtime, model: type[Order] | type[ReconcileRun] | type[Notification]) -> int:
    with runtime.store.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_two_reconcile_processes_at_once_make_one_run(
    runtime: Runtime,
    base_env: dict[str, str],
    emulators: Emulators,
    processes: ProcessGroup,
    tmp_path: Path,
) -> None:
    assert reconcile(runtime, utcnow()).read_every_list  # the baseline
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)
    # UTOPIA answers slowly: whichever process asks first still holds the job when the other
    # one arrives (both start together; starting takes well under this).
    emulators.utopia.faults.add("orders", "latency", count=2, seconds=5.0)
    env = command_env(base_env, UTOPIA_READ_TIMEOUT="15")
    children = [processes.add(Child(["reconcile"], env, tmp_path, f"reconcile{n}")) for n in (1, 2)]

    codes = sorted(child.wait(60) for child in children)

    outputs = [child.output.read_text() for child in children]
    assert codes == [0, 1], processes.tails()
    assert sum(f"with no callback queued for provisioning: {MISSED}" in o for o in outputs) == 1
    assert sum(f"not run: {BUSY}" in o for o in outputs) == 1
    assert emulators.utopia.calls["orders"] == 2  # the baseline's and the one run's
    assert count(runtime, ReconcileRun) == 2
    assert count(runtime, Order) == 6
    assert load_order(runtime, MISSED).state == OrderState.RECEIVED
    with runtime.store.read() as session:
        kinds = session.scalars(select(Notification.kind)).all()
    assert kinds == [NotificationKind.MISSED_ORDERS]


def test_of_many_asking_for_the_job_at_once_exactly_one_gets_it(runtime: Runtime) -> None:
    now = utcnow()
    barrier = threading.Barrier(8)
    taken: list[str] = []

    def ask(name: str) -> None:
        barrier.wait()
        with runtime.store.write() as session:
            if jobs.take_job(session, JOB, name, now, timedelta(seconds=60), every=None):
                taken.append(name)

    threads = [threading.Thread(target=ask, args=(f"worker-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(taken) == 1
    with runtime.store.read() as session:
        job = jobs.job(session, JOB)
        assert job is not None and job.owner == taken[0]


def test_a_callback_committing_the_same_order_mid_run_costs_that_order_only(
    runtime: Runtime, emulators: Emulators
) -> None:
    assert reconcile(runtime, utcnow()).read_every_list  # the baseline
    emulators.utopia.add_order(MISSED, MISSED_CONTRACT)
    stored = threading.Event()

    def callback_arrives() -> None:
        with runtime.store.write() as session:
            outcome = queries.record_callback(
                session,
                order_ref=MISSED,
                msg="Project New Order",
                event="Project Update",
                body="{}",
                remote_addr="127.0.0.1",
                now=utcnow(),
            )
            assert outcome == CallbackOutcome.QUEUED
            stored.set()
            time.sleep(1.5)  # reconciliation's insert of the same ref waits for this commit

    thread = threading.Thread(target=callback_arrives)
    thread.start()
    assert stored.wait(10)

    report = reconcile(runtime, utcnow())
    thread.join(10)

    assert report.read_every_list and report.found == ()
    assert count(runtime, Order) == 6
    assert load_order(runtime, MISSED).state == OrderState.RECEIVED
    with runtime.store.read() as session:
        assert session.scalars(select(Notification.kind)).all() == []


def test_the_reconciliation_migration_on_postgres(fresh_pg_url: str) -> None:
    reconcile_tables_come_and_go(database_url(fresh_pg_url))
