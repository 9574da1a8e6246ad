"""`utopia-handler db copy --to postgresql://...`: an SQLite installation moves to PostgreSQL whole."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import MetaData, create_engine, select

from tests.conftest import ManualClock, load_order, queue_order
from tests.postgres.processes import command_env
from tests.test_processes import run_cli
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.db import database_url
from utopia_handler.store.models import OrderState
from utopia_handler.store.retention import purge_expired
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

DONE, WAITING, DUPLICATE, LATER = (
    "UIA202611-004217",
    "UIA202611-004219",
    "UIA202611-004220",
    "UIA202611-004218",
)


def every_row(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows (but Alembic's), ordered by primary key, as Python values."""
    engine = create_engine(database_url(url))
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as connection:
            return {
                table.name: [
                    dict(row)
                    for row in connection.execute(
                        select(table).order_by(*table.primary_key.columns)
                    ).mappings()
                ]
                for table in meta.sorted_tables
                if table.name != "alembic_version"
            }
    finally:
        engine.dispose()


def sqlite_installation(
    make_runtime: Callable[..., Runtime], clock: ManualClock, tmp_path: Path
) -> str:
    """An SQLite database with done, waiting, duplicate and purged orders, a recorded order (a
    message before any new-order message) and a stray test callback."""
    url = f"sqlite:///{tmp_path / 'old' / 'utopia-handler.db'}"
    runtime = make_runtime(DATABASE_URL=url)
    for ref in (DONE, WAITING, DUPLICATE):
        queue_order(runtime, ref)
    with runtime.store.write() as session:
        for msg in ("Test", "Project Cancelled"):
            queries.record_callback(
                session,
                order_ref="UIA202611-000001",
                msg=msg,
                event="Project Update",
                body=json.dumps({"msg": msg}),
                remote_addr="127.0.0.1",
                now=utcnow(),
            )
    worker = Worker(runtime, name="old", clock=clock)
    worker.run_until_idle()
    clock.advance(120)
    worker.run_until_idle()
    assert purge_expired(runtime.store, utcnow() + timedelta(days=400), 365).orders == 2
    runtime.close()  # the services are stopped before a copy
    return url


def test_copy_moves_every_row_and_the_service_goes_on_on_postgresql(
    make_runtime: Callable[..., Runtime],
    base_env: dict[str, str],
    fresh_pg_url: str,
    emulators: Emulators,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    source = sqlite_installation(make_runtime, clock, tmp_path)
    env = command_env(base_env, DATABASE_URL=source)

    copied = run_cli(["db", "copy", "--to", fresh_pg_url], env, tmp_path)

    assert copied.returncode == 0, copied.stderr
    # Three new orders, and the one "Project Cancelled" recorded (a message records its order).
    assert "orders: 4 rows" in copied.stdout and "step_attempts:" in copied.stdout
    old, new = every_row(source), every_row(fresh_pg_url)
    assert set(new) == set(old)
    for table in old:
        assert new[table] == old[table], table
    assert sum(len(rows) for rows in new.values()) > 20
    with psycopg.connect(fresh_pg_url) as connection:  # SQL NULL stays NULL, not JSON 'null'
        purged = connection.execute("SELECT count(*) FROM orders WHERE contract IS NULL")
        assert purged.fetchone() == (3,)  # the two purged, and the recorded one never had one
        # Analysed at the end, so the planner knows the copied sizes (-1 or 0 before).
        sizes = connection.execute("SELECT reltuples FROM pg_class WHERE relname = 'orders'")
        assert sizes.fetchone() == (4,)

    # The handler now runs on PostgreSQL: new rows get new ids, the waiting order can go on.
    runtime = make_runtime(DATABASE_URL=fresh_pg_url)
    queue_order(runtime, LATER)
    Worker(runtime, name="new", clock=clock).run_until_idle()
    later = load_order(runtime, LATER)
    assert later.state == OrderState.DONE and later.id == 5
    assert load_order(runtime, WAITING).state == OrderState.WAITING
    assert load_order(runtime, DUPLICATE).state == OrderState.DUPLICATE

    again = run_cli(["db", "copy", "--to", fresh_pg_url], env, tmp_path)
    assert again.returncode == 1 and "not empty" in again.stderr
    assert len(every_row(fresh_pg_url)["orders"]) == 5  # untouched


def test_copy_refuses_while_the_sqlite_database_is_in_use(
    make_runtime: Callable[..., Runtime],
    base_env: dict[str, str],
    fresh_pg_url: str,
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'live' / 'utopia-handler.db'}"
    running = make_runtime(DATABASE_URL=url)
    queue_order(running, DONE)  # a service with an open connection, as `serve` has

    copied = run_cli(
        ["db", "copy", "--to", fresh_pg_url], command_env(base_env, DATABASE_URL=url), tmp_path
    )

    assert copied.returncode == 1 and "in use; stop the services first" in copied.stderr
    with psycopg.connect(fresh_pg_url) as connection:
        tables = connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)  # not even migrated
