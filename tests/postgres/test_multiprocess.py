"""Scale-out as operators run it: 2 `web` (gunicorn) and 3 `worker` processes on one PostgreSQL
database, 200 orders delivered 1-3 times each across both web processes (some at the same
instant), and one worker killed with SIGKILL while it holds work. Every order is done exactly
once. The other workers (on the same host) take the dead worker's orders over at once, except an
order whose PowerCode write was under way: that one waits until the call would have timed out or
the lease ran out, whichever is sooner, so the next attempt's look-up sees what the call did.
"""

from __future__ import annotations

import itertools
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import CALLBACK_TOKEN, new_order, wait_for
from tests.postgres.processes import Child, ProcessGroup, WebChild, command_env
from utopia_handler.emulators import Emulators, start_emulators
from utopia_handler.emulators.seed import make_order
from utopia_handler.store import queries
from utopia_handler.store.db import Store
from utopia_handler.timeutil import utcnow

ORDERS = 200
LEASE_SECONDS = 3
# PowerCode connect + read timeout of the workers (5 s default, PC_READ_TIMEOUT=2 in base_env).
CALL_WINDOW = timedelta(seconds=5 + 2)
POWERCODE_WRITES = {"create_customer", "add_services", "create_ticket", "add_tags"}
BURSTS = 20  # orders whose three copies are sent at the same instant, to both web processes


@pytest.fixture
def emulators() -> Iterator[Emulators]:
    # Every PowerCode and UTOPIA call takes 20 ms, so a worker always has calls in flight.
    running = start_emulators(seed=True, latency=0.02)
    try:
        yield running
    finally:
        running.stop()


@dataclass(frozen=True)
class Attempt:
    order_ref: str
    step: str
    worker: str
    outcome: str
    started_at: datetime
    finished_at: datetime | None


class Database:
    """Plain SQL reads of the shared database, as a person at psql would do them."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, query: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url) as connection:
            return list(connection.execute(query, params).fetchall())

    def count(self, query: str, *params: object) -> int:
        return int(self.rows(query, *params)[0][0])

    def settled(self) -> bool:
        """Nothing left to do, asked the way the product asks (queries.all_work_finished)."""
        store = Store(self.url)
        try:
            with store.read() as session:
                return queries.all_work_finished(session)
        finally:
            store.close()

    def leased(self, order_ref: str) -> bool:
        query = "SELECT count(*) FROM orders WHERE order_ref = %s AND lease_owner IS NOT NULL"
        return self.count(query, order_ref) > 0

    def leases_of(self, pid: int) -> list[tuple[str, str, datetime]]:
        """(kind, key, lease expiry) of every row the worker with this pid holds; kind is
        "order" for an order still to be worked, "finished" for one done but not yet let go."""
        pattern = f"%:{pid}:%"
        orders = self.rows(
            "SELECT order_ref, lease_expires_at, state IN ('received', 'in_progress') "
            "FROM orders WHERE lease_owner LIKE %s",
            pattern,
        )
        mail = self.rows(
            "SELECT message_id, lease_expires_at FROM notifications WHERE lease_owner LIKE %s",
            pattern,
        )
        held = [("order" if active else "finished", str(k), e) for k, e, active in orders]
        return held + [("mail", str(k), e) for k, e in mail]

    def attempts(self) -> list[Attempt]:
        rows = self.rows(
            "SELECT o.order_ref, a.step, a.worker, a.outcome, a.started_at, a.finished_at "
            "FROM step_attempts a JOIN orders o ON o.id = a.order_id ORDER BY a.id"
        )
        return [Attempt(*row) for row in rows]


def test_two_web_three_workers_one_killed_every_order_done_exactly_once(
    base_env: dict[str, str],
    fresh_pg_url: str,
    emulators: Emulators,
    processes: ProcessGroup,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    env = command_env(
        base_env,
        DATABASE_URL=fresh_pg_url,  # not migrated: five processes start on it at once
        LEASE_SECONDS=str(LEASE_SECONDS),
        POLL_SECONDS="0.1",
        WORKER_CONCURRENCY="4",
        WEB_WORKERS="2",
        WEB_THREADS="4",
        # This test sends ~400 callbacks in seconds from one address; the limiter is tested elsewhere.
        CALLBACK_RATE_LIMIT="1000",
        CALLBACK_RATE_BURST="1000",
    )
    db = Database(fresh_pg_url)
    rng = random.Random(2026)
    orders = [make_order(index, rng) for index in range(ORDERS)]
    for ref, contract in orders:
        emulators.utopia.add_order(ref, contract)
    sites = {ref: contract["address"]["siteid"] for ref, contract in orders}

    webs = [WebChild(env, tmp_path, f"web{n}") for n in (1, 2)]
    workers = [Child(["worker"], env, tmp_path, f"worker{n}") for n in (1, 2, 3)]
    for child in (*webs, *workers):
        processes.add(child)
    processes.wait_healthy(webs)

    # Deliveries: every order 1-3 times; the first BURSTS orders three times at once.
    deliveries: list[tuple[str, str]] = []
    bursts: list[list[tuple[str, str]]] = []
    for index, (ref, _) in enumerate(orders):
        copies = 3 if index < BURSTS else rng.randint(1, 3)
        sends = [(ref, webs[(index + n) % 2].url) for n in range(copies)]
        if index < BURSTS:
            bursts.append(sends)
        else:
            deliveries.extend(sends)
    rng.shuffle(deliveries)

    def deliver(send: tuple[str, str]) -> tuple[str, str, int, str]:
        ref, url = send
        for _ in range(20):  # like a real sender: 429 means "later", after Retry-After
            answer = client.post(
                f"{url}/api-callback", params={"token": CALLBACK_TOKEN}, json=new_order(ref)
            )
            if answer.status_code != 429:
                break
            time.sleep(min(float(answer.headers.get("Retry-After", "1")), 2.0))
        return ref, url, answer.status_code, answer.json().get("status", "")

    answers: list[tuple[str, str, int, str]] = []
    # One client for all sends: UTOPIA's sender keeps connections too, and a client per request
    # would spend the test's time building TLS contexts.
    with ThreadPoolExecutor(8) as pool, httpx.Client(timeout=10) as client:
        for burst in bursts:
            answers.extend(pool.map(deliver, burst))
        answers.extend(pool.map(deliver, deliveries))
    sent = sum(len(b) for b in bursts) + len(deliveries)
    assert [a for a in answers if a[2] != 200] == []
    assert Counter(a[3] for a in answers) == Counter(queued=ORDERS, repeat=sent - ORDERS)
    assert {a[1] for a in answers} == {web.url for web in webs}  # both web processes answered
    access_log = "".join(web.output.read_text() for web in webs)
    assert '"POST /api-callback" 200' in access_log and CALLBACK_TOKEN not in access_log
    for burst in bursts:
        statuses = [a[3] for a in answers if a[0] == burst[0][0]]
        assert sorted(statuses) == ["queued", "repeat", "repeat"]

    # Kill one worker while it holds work.
    victim = workers[0]
    wait_for(
        lambda: db.count("SELECT count(*) FROM orders WHERE state = 'done'") >= ORDERS // 5,
        timeout=60,
    )

    held: list[tuple[str, str, datetime]] = []

    def frozen_holding_an_order() -> bool:
        # Frozen first, so it cannot let go of anything between our look and the kill; a
        # stopped process still runs, so nobody takes its work over while it is frozen.
        victim.signal(signal.SIGSTOP)
        held[:] = db.leases_of(victim.pid)  # the rows the dead worker leaves
        if any(kind == "order" for kind, _, _ in held):
            return True
        victim.signal(signal.SIGCONT)
        return False

    wait_for(frozen_holding_an_order, timeout=60)
    killed_at, killed_utc = time.monotonic(), utcnow()  # utcnow: the workers' clock
    victim.signal(signal.SIGKILL)
    victim.wait(10)
    held_orders = {key: expiry for kind, key, expiry in held if kind == "order"}
    held_mail = {key for kind, key, _ in held if kind == "mail"}

    try:
        wait_for(db.settled, timeout=90)
    except AssertionError:
        raise AssertionError("orders did not settle\n" + processes.tails()) from None
    taken_over_after = time.monotonic() - killed_at

    # A create_ticket the dead worker may have sent cannot be checked in PowerCode; such an order
    # waits for a person, who looks in PowerCode and retries from the right step.
    waiting = db.rows("SELECT order_ref, customer_id, reason FROM orders WHERE state = 'waiting'")
    for ref, customer_id, reason in waiting:
        assert ref in held_orders and "may exist" in str(reason), (ref, reason)
        has_ticket = any(
            t["customerID"] == customer_id for t in emulators.powercode.tickets.values()
        )
        step = "add_tags" if has_ticket else "create_ticket"
        # The worker that held it lets go of it a moment after recording the hold.
        wait_for(lambda ref=ref: not db.leased(str(ref)))
        retry = Child(["orders", "retry", str(ref), "--from-step", step], env, tmp_path, "retry")
        assert retry.wait(60) == 0, retry.tail()
    wait_for(db.settled, timeout=60)

    # Every order is done, exactly once.
    states = Counter(str(row[0]) for row in db.rows("SELECT state FROM orders"))
    assert states == Counter(done=ORDERS)
    assert db.count("SELECT count(*) FROM callbacks") == sent
    assert db.count("SELECT count(*) FROM callbacks WHERE outcome = 'queued'") == ORDERS
    customers = {
        ref: [c for c in emulators.powercode.customers.values() if c.get("extAccountID") == site]
        for ref, site in sites.items()
    }
    assert {ref: len(found) for ref, found in customers.items()} == dict.fromkeys(sites, 1)
    ours = {int(found[0]["customerID"]) for found in customers.values()}
    adds = Counter(pair for pair in emulators.powercode.service_adds if pair[0] in ours)
    assert set(adds.values()) == {1}  # no service added twice
    assert Counter(customer for customer, _ in adds) == dict.fromkeys(ours, 2)  # plan + fee
    tickets = Counter(int(t["customerID"]) for t in emulators.powercode.tickets.values())
    assert {c: tickets[c] for c in ours} == dict.fromkeys(ours, 1)
    sent_ids = Counter(
        str(m["Message-ID"])
        for m in emulators.smtp.messages
        if str(m["Message-ID"]).startswith("<success.")
    )
    assert set(sent_ids) == {f"<success.{ref}@utopia-handler.local>" for ref in sites}
    # A resend keeps its Message-ID (mail clients show one e-mail); only the dead worker's can repeat.
    repeated = {key for key, count in sent_ids.items() if count > 1}
    assert repeated <= {f"<{key}@utopia-handler.local>" for key in held_mail}

    # Never two workers on one order at once; the dead worker's orders were taken over after
    # the kill, a PowerCode write it had out only once that call was surely over.
    by_order: dict[str, list[Attempt]] = {}
    for attempt in db.attempts():
        by_order.setdefault(attempt.order_ref, []).append(attempt)
    victim_mark = f":{victim.pid}:"
    taken_over: list[float] = []
    for ref, attempts in by_order.items():
        for before, after in itertools.pairwise(attempts):
            if before.finished_at is not None:
                assert after.started_at >= before.finished_at, (ref, before, after)
                continue
            assert victim_mark in before.worker, (ref, before)
            assert victim_mark not in after.worker
            earliest = killed_utc
            if before.step in POWERCODE_WRITES:
                earliest = min(held_orders[ref], killed_utc + CALL_WINDOW)
            assert after.started_at >= earliest, (ref, before, after, earliest)
            taken_over.append((after.started_at - killed_utc).total_seconds())
    for ref in held_orders:
        assert [a for a in by_order[ref] if a.started_at >= killed_utc], ref

    # SIGTERM: every other process stops gracefully and gives back what it holds.
    for child in (*webs, *workers[1:]):
        child.signal(signal.SIGTERM)
    codes = {child.label: child.wait(60) for child in (*webs, *workers[1:])}
    assert codes == dict.fromkeys(codes, 0), processes.tails()
    assert db.count("SELECT count(*) FROM orders WHERE lease_owner IS NOT NULL") == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{webs[0].url}/healthz", timeout=2)

    print(
        f"\nmulti-process: {ORDERS} orders, {sent} deliveries, victim held "
        f"{len(held_orders)} unfinished orders (all taken over) + {len(held_mail)} e-mails, "
        f"{len(waiting)} waited for a person, "
        f"{len(repeated)} e-mails resent, its work moved {min(taken_over, default=0):.1f}-"
        f"{max(taken_over, default=0):.1f}s after the kill (leases of {LEASE_SECONDS} s), "
        f"settled {taken_over_after:.1f}s after the kill, "
        f"{time.monotonic() - started:.1f}s in all"
    )
