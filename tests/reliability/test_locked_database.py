"""A database that is briefly locked: callbacks get a quick 503, work waits, nothing is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import ManualClock, load_order, new_order, post_callback, queue_order, wait_for
from utopia_handler.emulators import Emulators
from utopia_handler.harness.chaos import hold_database_lock
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.store.models import Callback, Order, OrderState
from utopia_handler.worker import Worker

ORDER = "UIA202611-004218"
SITE = "318002"


@pytest.fixture
def lock_for() -> Iterator[Callable[[Runtime, float], threading.Thread]]:
    threads: list[threading.Thread] = []

    def start(runtime: Runtime, seconds: float) -> threading.Thread:
        thread = threading.Thread(
            target=hold_database_lock, args=(runtime.settings.database_url, seconds)
        )
        thread.start()
        threads.append(thread)
        time.sleep(0.3)  # the lock is taken before the test goes on
        return thread

    yield start
    for thread in threads:
        thread.join(30)


def callback_rows(runtime: Runtime) -> tuple[int, int]:
    with runtime.store.read() as session:
        return (
            session.scalar(select(func.count()).select_from(Callback)) or 0,
            session.scalar(select(func.count()).select_from(Order)) or 0,
        )


def customers_for_site(emulators: Emulators) -> list[dict[str, Any]]:
    return [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == SITE]


@pytest.mark.parametrize("in_use", [True, False], ids=["service-connected", "first-connection"])
def test_a_locked_database_gets_a_quick_503_and_the_resent_callback_is_stored(
    make_runtime: Callable[..., Runtime],
    lock_for: Callable[[Runtime, float], threading.Thread],
    in_use: bool,
) -> None:
    runtime = make_runtime(CALLBACK_STORE_WAIT_SECONDS="0.5")
    web = ServiceHandle(runtime, worker=False, port=0).start()
    try:
        if in_use:
            # The usual case: the service has the database open (WAL), the lock holds writers.
            assert httpx.get(f"{web.url}/healthz", timeout=5).status_code == 200
        # Otherwise the lock is taken before the service's first connection, and holds the
        # whole file: even opening a connection has to wait.
        lock = lock_for(runtime, 3.0)
        started = time.monotonic()
        answer = post_callback(web.url, new_order(ORDER))
        waited = time.monotonic() - started
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) > 0
        assert "send it again" in answer.json()["error"]
        assert waited < 2.0  # the sender hears back in about the configured wait, not 30 s
        lock.join()
        assert callback_rows(runtime) == (0, 0)
        # UTOPIA sends it again: now it is stored.
        again = post_callback(web.url, new_order(ORDER))
        assert again.status_code == 200 and again.json()["status"] == "queued"
        assert callback_rows(runtime) == (1, 1)
    finally:
        web.stop()


def test_the_worker_waits_out_a_lock_and_provisions_once(
    runtime: Runtime,
    emulators: Emulators,
    lock_for: Callable[[Runtime, float], threading.Thread],
) -> None:
    # Slow PowerCode so the lock lands while the order is in the middle of its steps.
    emulators.powercode.faults.add("createCustomer", "latency", seconds=0.5)
    service = ServiceHandle(runtime, port=0).start()
    try:
        assert post_callback(service.url, new_order(ORDER)).status_code == 200
        wait_for(lambda: emulators.powercode.calls["createCustomer"] >= 1)
        lock_for(runtime, 2.0)
        wait_for(lambda: len(emulators.smtp.messages) == 1, timeout=30)
    finally:
        service.stop()
    assert load_order(runtime, ORDER).state == OrderState.DONE
    assert len(customers_for_site(emulators)) == 1
    assert len(emulators.powercode.tickets) == 1


def test_a_lease_that_runs_out_while_its_step_is_out_is_not_run_twice(
    runtime: Runtime, emulators: Emulators, clock: ManualClock
) -> None:
    """A heartbeat held up (by a locked database, a paused VM) lets the lease run out while the
    step's PowerCode call is still out. The worker must not start the same order again beside it.
    """
    queue_order(runtime, ORDER)
    emulators.powercode.faults.add("createCustomer", "latency", seconds=1.5)
    worker = Worker(runtime, name="only-worker", clock=clock)
    worker.start()
    try:
        wait_for(lambda: emulators.powercode.calls["createCustomer"] >= 1)
        clock.advance(runtime.settings.worker.lease_seconds * 2)  # the lease is over
        time.sleep(0.5)  # the dispatcher polls every 0.05 s: it sees the order as free
        wait_for(lambda: load_order(runtime, ORDER).state == OrderState.DONE, timeout=20)
    finally:
        worker.stop()
    assert len(customers_for_site(emulators)) == 1
    assert emulators.powercode.calls["createCustomer"] == 1
