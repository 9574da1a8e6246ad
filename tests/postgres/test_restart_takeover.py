"""A `worker` process killed with SIGKILL while PowerCode holds its createCustomer replies, and
started again at once beside a `web` and a second `worker` on PostgreSQL: its work moves within
seconds (not when its 60 s leases run out), and every order is done exactly once.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

import psycopg

from tests.conftest import new_order, post_callback, wait_for
from tests.postgres.processes import Child, ProcessGroup, WebChild, command_env
from utopia_handler.emulators import Emulators
from utopia_handler.emulators.seed import make_order

ORDERS = 4


def rows(url: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as connection:
        return list(connection.execute(query, params).fetchall())


def test_a_worker_killed_mid_call_and_restarted_takes_its_work_over_at_once(
    base_env: dict[str, str],
    pg_url: str,
    emulators: Emulators,
    processes: ProcessGroup,
    tmp_path: Path,
) -> None:
    rng = random.Random(2027)
    orders = dict(make_order(index, rng) for index in range(ORDERS))
    for ref, contract in orders.items():
        emulators.utopia.add_order(ref, contract)
    sites = {ref: contract["address"]["siteid"] for ref, contract in orders.items()}
    env = command_env(
        base_env,
        LEASE_SECONDS="60",  # far longer than the wait measured: only a takeover explains it
        POLL_SECONDS="0.1",
        PC_CONNECT_TIMEOUT="1",  # a PowerCode call is over 3 s after it was sent
        PC_READ_TIMEOUT="2",
        WORKER_CONCURRENCY="4",
        WEB_WORKERS="1",
    )
    emulators.powercode.faults.add("createCustomer", "latency", seconds=1.5, count=ORDERS)
    web = WebChild(env, tmp_path, "web")
    workers = [Child(["worker"], env, tmp_path, f"worker{n}") for n in (1, 2)]
    for child in (web, *workers):
        processes.add(child)
    processes.wait_healthy([web])
    for ref in orders:
        assert post_callback(web.url, new_order(ref)).json()["status"] == "queued"
    wait_for(lambda: emulators.powercode.calls["createCustomer"] == ORDERS, timeout=30)

    def held_by(child: Child) -> list[str]:
        found = rows(
            pg_url, "SELECT order_ref FROM orders WHERE lease_owner LIKE %s", pattern(child)
        )
        return [str(ref) for (ref,) in found]

    victim = max(workers, key=lambda child: len(held_by(child)))
    victim.signal(signal.SIGKILL)
    victim.wait(10)
    killed = time.monotonic()
    held = held_by(victim)
    assert held, "the killed worker held no order"

    restarted = processes.add(Child(["worker"], env, tmp_path, "worker1-again"))
    spawned = time.monotonic()

    def held_work_moves() -> bool:
        moved = rows(
            pg_url,
            "SELECT DISTINCT o.order_ref FROM step_attempts a JOIN orders o ON o.id = a.order_id "
            "WHERE o.order_ref = ANY(%s) AND a.worker NOT LIKE %s",
            held,
            pattern(victim),
        )
        return len(moved) == len(held)

    wait_for(held_work_moves, timeout=60)
    moved = time.monotonic()
    done = "SELECT count(*) FROM orders WHERE state = 'done'"
    wait_for(lambda: rows(pg_url, done) == [(ORDERS,)], timeout=30)
    wait_for(lambda: len(emulators.smtp.messages) == ORDERS, timeout=30)
    print(
        f"\npostgres worker restart: {len(held)} held orders moved {moved - spawned:.1f}s after "
        f"the restart was spawned ({moved - killed:.1f}s after the kill; leases of 60 s)"
    )
    assert moved - spawned < 20  # a regression to waiting for the lease would take 60 s

    customers = {
        ref: [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == site]
        for ref, site in sites.items()
    }
    assert {ref: len(found) for ref, found in customers.items()} == dict.fromkeys(sites, 1)
    ours = {int(found[0]["customerID"]) for found in customers.values()}
    adds = Counter(emulators.powercode.service_adds)
    assert set(adds.values()) == {1}
    assert Counter(customer for customer, _ in adds) == dict.fromkeys(ours, 2)
    tickets = Counter(int(t["customerID"]) for t in emulators.powercode.tickets.values())
    assert tickets == dict.fromkeys(ours, 1)
    assert emulators.powercode.calls["createCustomer"] == ORDERS  # none sent twice

    # SIGTERM: everyone stops gracefully, gives back what it holds and unregisters.
    running = [web, workers[1] if victim is workers[0] else workers[0], restarted]
    for child in running:
        child.signal(signal.SIGTERM)
    codes = {child.label: child.wait(60) for child in running}
    assert codes == dict.fromkeys(codes, 0), processes.tails()
    assert rows(pg_url, "SELECT count(*) FROM orders WHERE lease_owner IS NOT NULL") == [(0,)]
    assert rows(pg_url, "SELECT count(*) FROM workers") == [(0,)]


def pattern(child: Child) -> str:
    """A LIKE pattern for the lease owner names of a worker process (host:pid:suffix)."""
    return f"%:{child.pid}:%"
