"""Leases name a process: work of a gone process of this machine is taken over at once, work of a
process elsewhere only when its lease runs out.

The "other" processes are real: a child that is running, one that has exited, a zombie. Only what
another machine would have written is made up, since no second machine is at hand.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from tests.conftest import load_order, queue_order, wait_for
from utopia_handler import lifecycle
from utopia_handler.emulators import Emulators
from utopia_handler.process_identity import ProcessIdentity, is_gone, this_process
from utopia_handler.runtime import Runtime
from utopia_handler.store import leases, queries
from utopia_handler.store.db import alembic_config
from utopia_handler.store.models import (
    Base,
    Notification,
    NotificationKind,
    Order,
    OrderState,
    Step,
    StepAttempt,
    WorkerProcess,
)
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

ORDER = "UIA202611-004218"
SITE = "318002"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process of this machine that goes on running."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child
    finally:
        child.kill()
        child.wait(10)


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def identity_of(pid: int) -> ProcessIdentity:
    """What the process `pid` of this machine writes about itself when it registers."""
    return dataclasses.replace(this_process(), pid=pid, started=proc_stat(pid)[19])


def exited_pid() -> int:
    """The pid of a process that has run, ended and been collected: no process has it now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    return child.pid


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux_only
def test_a_pid_that_runs_with_another_start_time_is_another_process(
    sleeper: subprocess.Popen[bytes],
) -> None:
    running = identity_of(sleeper.pid)
    assert not is_gone(running)
    # The same pid, started at another time: the process that had it is gone, the pid reused.
    assert is_gone(dataclasses.replace(running, started=str(int(running.started) - 1)))
    assert not is_gone(this_process())
    assert is_gone(dataclasses.replace(this_process(), started="1"))  # a container's fixed pid


@linux_only
def test_a_free_pid_and_a_zombie_are_gone() -> None:
    assert is_gone(dataclasses.replace(this_process(), pid=exited_pid()))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    zombie = identity_of(child.pid)
    child.kill()
    # Killed but not yet collected by its parent (us): the pid still exists, as a zombie.
    wait_for(lambda: proc_stat(child.pid)[0] == "Z")
    try:
        assert is_gone(zombie)
    finally:
        child.wait(10)


@linux_only
def test_a_process_of_another_machine_or_container_is_never_judged_from_here(
    sleeper: subprocess.Popen[bytes],
) -> None:
    free = dataclasses.replace(this_process(), pid=exited_pid())
    assert is_gone(free)
    assert not is_gone(dataclasses.replace(free, host="another-host"))
    # Same host name, other pids: a container with the host's name, or a machine named alike.
    assert not is_gone(dataclasses.replace(free, pid_space="another-boot/pid:[4026531836]"))
    reused = dataclasses.replace(identity_of(sleeper.pid), started="1")
    assert not is_gone(dataclasses.replace(reused, host="another-host"))


def hold(
    runtime: Runtime, owner: str, process: ProcessIdentity, lease: timedelta
) -> tuple[datetime, datetime]:
    """Let a worker of `process` claim the order (and its e-mails): what it leaves when killed."""
    now = utcnow()
    with runtime.store.write() as session:
        leases.record_alive(session, owner, process, now)
        assert queries.claim_due_orders(session, owner, 10, now, lease) != []
        queries.claim_due_notifications(session, owner, 10, now, lease)
    return now, now + lease


def attempts(runtime: Runtime) -> list[StepAttempt]:
    with runtime.store.read() as session:
        return list(session.scalars(select(StepAttempt).order_by(StepAttempt.id)))


@pytest.fixture
def run_worker(runtime: Runtime) -> Iterator[Callable[[Runtime], Worker]]:
    started: list[Worker] = []

    def start(on: Runtime) -> Worker:
        worker = Worker(on)  # the real clock, the real process identity
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@linux_only
@pytest.mark.parametrize("how", ["pid-free", "pid-reused"])
def test_work_of_a_gone_process_of_this_machine_is_taken_over_at_start(
    runtime: Runtime,
    emulators: Emulators,
    sleeper: subprocess.Popen[bytes],
    run_worker: Callable[[Runtime], Worker],
    how: str,
) -> None:
    queue_order(runtime, ORDER)
    if how == "pid-free":
        gone = dataclasses.replace(this_process(), pid=exited_pid())
    else:  # the pid runs, but it is a later process than the one that held the lease
        gone = dataclasses.replace(identity_of(sleeper.pid), started="1")
    _, expiry = hold(runtime, "ghost", gone, timedelta(minutes=10))

    started = time.monotonic()
    run_worker(runtime)
    wait_for(lambda: load_order(runtime, ORDER).state == OrderState.DONE, timeout=30)
    print(f"\ngone process ({how}): order done {time.monotonic() - started:.1f}s after start")
    assert attempts(runtime)[0].started_at < expiry - timedelta(minutes=9)
    customers = emulators.powercode.customers.values()
    assert len([c for c in customers if c.get("extAccountID") == SITE]) == 1
    with runtime.store.read() as session:
        assert session.get(WorkerProcess, "ghost") is None  # forgotten with its leases


@pytest.mark.parametrize("elsewhere", ["another-host", "another-pid-namespace"])
def test_work_of_a_process_elsewhere_waits_for_its_lease_to_run_out(
    make_runtime: Callable[..., Runtime],
    emulators: Emulators,
    run_worker: Callable[[Runtime], Worker],
    elsewhere: str,
) -> None:
    lease_seconds = 3
    runtime = make_runtime(LEASE_SECONDS=str(lease_seconds))
    queue_order(runtime, ORDER)
    # What a worker of another machine writes: a pid that is free here, so only the host (or the
    # pid table) keeps it from being taken over at once.
    process = dataclasses.replace(this_process(), pid=exited_pid())
    if elsewhere == "another-host":
        process = dataclasses.replace(process, host="another-host.example")
    else:
        process = dataclasses.replace(process, pid_space="another-boot/pid:[4026532199]")
    claimed_at, expiry = hold(runtime, "elsewhere", process, timedelta(seconds=lease_seconds))

    run_worker(runtime)
    wait_for(lambda: attempts(runtime) != [], timeout=lease_seconds + 15)
    first = attempts(runtime)[0]
    waited = (first.started_at - claimed_at).total_seconds()
    print(
        f"\nprocess on {elsewhere}: taken over {waited:.1f}s after its last lease renewal "
        f"(LEASE_SECONDS={lease_seconds}; at most the default 30 s in production)"
    )
    assert first.started_at >= expiry  # never before its lease ran out
    assert waited < lease_seconds + 5
    wait_for(lambda: load_order(runtime, ORDER).state == OrderState.DONE, timeout=30)


@linux_only
def test_a_gone_process_s_powercode_write_may_still_land_so_its_order_waits_for_the_call(
    runtime: Runtime,
) -> None:
    queue_order(runtime, ORDER)
    gone = dataclasses.replace(this_process(), pid=exited_pid())
    now, expiry = hold(runtime, "ghost", gone, timedelta(minutes=10))
    with runtime.store.write() as session:
        order = queries.owned_order(session, load_order(runtime, ORDER).id, "ghost")
        order.step = Step.CREATE_CUSTOMER
        lifecycle.start_attempt(session, order, "ghost", now)  # sent, never answered
        queries.enqueue_notification(session, order, NotificationKind.HELD, {}, now)
    with runtime.store.write() as session:
        queries.claim_due_notifications(session, "ghost", 10, now, timedelta(minutes=10))
        [name] = leases.gone_workers(session, gone.host, is_gone)
        taken = leases.take_over(session, name, now, timedelta(seconds=35))
    assert (taken.orders, taken.orders_in_flight, taken.notifications) == (1, 1, 1)
    order = load_order(runtime, ORDER)
    # Not at once, and not after the lease either: when the call would have timed out.
    assert order.lease_expires_at == now + timedelta(seconds=35) < expiry
    with runtime.store.write() as session:
        assert queries.claim_due_orders(session, "next", 1, now, timedelta(seconds=30)) == []
        assert session.scalars(select(Notification.lease_owner)).all() == [None]
        later = now + timedelta(seconds=36)
        assert queries.claim_due_orders(session, "next", 1, later, timedelta(seconds=30)) != []


def test_sigterm_hands_back_every_lease_and_the_worker_row(
    runtime: Runtime, emulators: Emulators, run_worker: Callable[[Runtime], Worker]
) -> None:
    emulators.powercode.faults.add("createCustomer", "latency", seconds=1.0)
    queue_order(runtime, ORDER)
    worker = run_worker(runtime)
    wait_for(lambda: emulators.powercode.calls["createCustomer"] >= 1)
    worker.stop()  # what SIGTERM does: the step in hand finishes, then everything is let go
    order = load_order(runtime, ORDER)
    assert (order.step, order.lease_owner) == (Step.ADD_SERVICES, None)  # finished, not the next
    with runtime.store.read() as session:
        assert session.scalars(select(Order.lease_owner)).all() == [None]
        assert session.scalars(select(WorkerProcess)).all() == []


def test_the_workers_migration_matches_the_model_and_can_be_undone(runtime: Runtime) -> None:
    with runtime.store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in differences if "workers" in repr(d)] == []
    config = alembic_config(runtime.store.url)
    command.downgrade(config, "0005")
    assert "workers" not in inspect(runtime.store.engine).get_table_names()
    command.upgrade(config, "head")
    assert "workers" in inspect(runtime.store.engine).get_table_names()
