"""What PostgreSQL does differently from SQLite, shown on the real server: row locks that claims
skip, concurrent inserts of one order, JSON, enums and naive UTC times, and migrations that
several processes start at once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import psycopg
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.db import Store, alembic_config, database_url
from utopia_handler.store.models import Callback, CallbackOutcome, Order, OrderState, Step
from utopia_handler.timeutil import utcnow

LEASE = timedelta(seconds=60)


def queue(runtime: Runtime, refs: list[str], now: datetime) -> None:
    with runtime.store.write() as session:
        for ref in refs:
            queries.record_callback(
                session,
                order_ref=ref,
                msg="Project New Order",
                event="Project Update",
                body="{}",
                remote_addr="127.0.0.1",
                now=now,
            )


def test_a_plain_postgresql_url_runs_on_psycopg_3(runtime: Runtime) -> None:
    assert runtime.settings.database_url.startswith("postgresql://")  # as an operator writes it
    assert runtime.store.engine.dialect.name == "postgresql"
    assert runtime.store.engine.dialect.driver == "psycopg"
    assert runtime.store.ping()


def test_a_claim_skips_orders_another_worker_is_claiming_instead_of_waiting(
    runtime: Runtime,
) -> None:
    now = utcnow()
    queue(runtime, [f"UIA202611-{n:06d}" for n in range(4)], now)
    first_claimed = threading.Event()
    release_first = threading.Event()
    first: list[int] = []

    def slow_claim() -> None:
        with runtime.store.write() as session:
            first.extend(queries.claim_due_orders(session, "worker-a", 2, now, LEASE))
            first_claimed.set()
            release_first.wait(10)  # the rows stay locked until this transaction ends

    holder = threading.Thread(target=slow_claim)
    holder.start()
    try:
        assert first_claimed.wait(10)
        began = time.monotonic()
        with runtime.store.write() as session:
            second = queries.claim_due_orders(session, "worker-b", 4, now, LEASE)
        waited = time.monotonic() - began
    finally:
        release_first.set()
        holder.join(10)
    assert waited < 2  # SKIP LOCKED: no waiting for the other transaction
    assert len(first) == 2 and len(second) == 2 and not set(first) & set(second)

    with runtime.store.write() as session:  # both leases live: nothing left to claim
        assert queries.claim_due_orders(session, "worker-c", 4, now, LEASE) == []
    with runtime.store.write() as session:  # after expiry another worker takes all four over
        later = now + LEASE + timedelta(seconds=1)
        assert sorted(queries.claim_due_orders(session, "worker-c", 4, later, LEASE)) == sorted(
            first + second
        )


def test_simultaneous_deliveries_of_one_order_queue_it_once(runtime: Runtime) -> None:
    start = threading.Barrier(8)

    def deliver(_: int) -> CallbackOutcome:
        start.wait(10)
        with runtime.store.write() as session:
            return queries.record_callback(
                session,
                order_ref="UIA202611-004217",
                msg="Project New Order",
                event="Project Update",
                body='{"orderref": "UIA202611-004217"}',
                remote_addr="127.0.0.1",
                now=utcnow(),
            )

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(deliver, range(8)))
    assert sorted(outcomes) == [CallbackOutcome.QUEUED] + [CallbackOutcome.REPEAT] * 7
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 1
        order_ids = set(session.scalars(select(Callback.order_id)))
    assert len(order_ids) == 1 and None not in order_ids  # every delivery is linked to it


def test_json_enums_and_naive_utc_times_survive_a_round_trip(runtime: Runtime) -> None:
    moment = datetime(2026, 11, 28, 23, 59, 58, 123456)  # naive UTC, with microseconds
    contract = {"customer": {"firstname": "María José", "lastname": "O'Neill-Ramírez"}, "n": [1]}
    with runtime.store.write() as session:
        session.add(
            Order(
                order_ref="UIA202611-004218",
                state=OrderState.WAITING,
                step=Step.CREATE_TICKET,
                created_at=moment,
                updated_at=moment,
                next_attempt_at=moment,
                contract=contract,
                plans=[{"service_id": 164, "label": "1 Gbps"}],
            )
        )
    # A connection in another time zone must see the very same wall-clock values.
    with runtime.store.engine.connect() as connection:
        connection.execute(text("SET TIME ZONE 'America/Denver'"))
        row = connection.execute(
            text(
                "SELECT state, step, created_at, pg_typeof(created_at)::text, contract FROM orders"
            )
        ).one()
        connection.rollback()
    assert row[0] == "waiting" and row[1] == "create_ticket"  # readable in psql
    assert row[2] == moment and row[3] == "timestamp without time zone"
    with runtime.store.read() as session:
        order = session.scalars(select(Order)).one()
    assert order.state is OrderState.WAITING and order.step is Step.CREATE_TICKET
    assert order.created_at == moment and order.created_at.tzinfo is None
    assert order.contract == contract and order.plans == [{"service_id": 164, "label": "1 Gbps"}]


def test_processes_starting_together_on_an_empty_database_migrate_it_once(
    fresh_pg_url: str,
) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def start_up() -> None:
        store = Store(fresh_pg_url)
        try:
            start.wait(10)
            store.migrate()
        except BaseException as error:  # collected: the test reports every failure
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=start_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    head = ScriptDirectory.from_config(alembic_config(fresh_pg_url)).get_current_head()
    with psycopg.connect(fresh_pg_url) as connection:
        versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(head,)]


def test_migrations_go_down_and_up_again_on_postgresql(fresh_pg_url: str) -> None:
    config = alembic_config(database_url(fresh_pg_url))
    command.upgrade(config, "head")
    command.downgrade(config, "0001")
    with psycopg.connect(fresh_pg_url) as connection:
        columns = {
            row[0]
            for row in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'"
            )
        }
    assert "purged_at" not in columns
    command.upgrade(config, "head")
    store = Store(fresh_pg_url)
    try:
        with store.write() as session:
            queries.record_callback(
                session,
                order_ref="UIA202611-004217",
                msg="Project New Order",
                event=None,
                body="{}",
                remote_addr=None,
                now=utcnow(),
            )
        with store.read() as session:
            assert session.scalars(select(Order.purged_at)).one() is None
    finally:
        store.close()


def test_the_site_decision_migration_upgrades_a_database_in_use(fresh_pg_url: str) -> None:
    from tests.console.test_migration import upgrade_a_database_in_use

    upgrade_a_database_in_use(database_url(fresh_pg_url))


def test_orders_resolved_before_the_column_existed_are_marked_resolved(fresh_pg_url: str) -> None:
    from tests.console.test_migration import upgrade_resolved_orders

    upgrade_resolved_orders(database_url(fresh_pg_url))


def test_names_stored_before_the_search_column_existed_are_found_without_accents(
    fresh_pg_url: str,
) -> None:
    from tests.console.test_migration import upgrade_folded_names

    upgrade_folded_names(database_url(fresh_pg_url))


def test_the_console_search_folds_accents_and_reads_customer_numbers_on_postgresql(
    runtime: Runtime,
) -> None:
    now = utcnow()
    with runtime.store.write() as session:
        for ref, name, customer_id, site in (
            ("UIA202611-004218", "María José O'Neill-Ramírez", 10004, "99118"),
            ("UIA202611-004217", "Avery Lindqvist", 10005, "204817"),
        ):
            session.add(
                Order(
                    order_ref=ref, state=OrderState.DONE, step=Step.FINISHED, created_at=now,
                    updated_at=now, next_attempt_at=now, customer_name=name,
                    customer_id=customer_id, site_id=site,
                )
            )  # fmt: skip

    def found(text: str) -> list[str]:
        with runtime.store.read() as session:
            query = select(Order.order_ref).where(queries.order_search(text))
            return list(session.scalars(query.order_by(Order.order_ref)))

    for written in ("Maria", "RAMIREZ", "o'neill", "PC#10004", "#10004", "10004", "99118"):
        assert found(written) == ["UIA202611-004218"], written
    assert found("204817") == ["UIA202611-004217"]
    assert found("uia202611") == ["UIA202611-004217", "UIA202611-004218"]
