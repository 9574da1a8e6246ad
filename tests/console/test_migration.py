"""Migrations create exactly the tables the models describe, upgrade a database in use, and can
be undone: 0003 the console tables, 0004 the site-decision columns of orders, 0005 the
resolved-by-hand column, 0006 the workers behind the leases, 0007 reconciliation's runs and the
job leases, 0008 shadow mode, 0009 routed messages' actions, 0010 the folded name for search,
0011 the indexes that keep the claim and the console's list cheap, 0012 subscriber actions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from utopia_handler.runtime import Runtime
from utopia_handler.store import models, queries
from utopia_handler.store.console_models import Base
from utopia_handler.store.db import Store, alembic_config
from utopia_handler.store.models import Order, OrderState, SiteDecision

CONSOLE_TABLES = {"users", "console_sessions", "login_failures", "audit_log", "config_versions"}


def test_the_schema_after_migrating_matches_the_models(console_runtime: Runtime) -> None:
    with console_runtime.store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert MigrationContext.configure(connection).get_current_heads() == ("0012",)
    ours = [d for d in differences if any(table in repr(d) for table in CONSOLE_TABLES)]
    assert ours == []


def test_the_console_migration_can_be_undone_and_redone(console_runtime: Runtime) -> None:
    config = alembic_config(console_runtime.store.url)
    command.downgrade(config, "0002")
    assert not CONSOLE_TABLES & set(inspect(console_runtime.store.engine).get_table_names())
    command.upgrade(config, "head")
    assert set(inspect(console_runtime.store.engine).get_table_names()) >= CONSOLE_TABLES


SITE_COLUMNS = {
    "former_customer_id",
    "former_customer_name",
    "former_customer_status",
    "site_decision",
}


def upgrade_a_database_in_use(url: str) -> None:
    """A database at 0003 with an order in it goes to the newest schema and back, order kept."""
    config = alembic_config(url)
    command.upgrade(config, "0003")
    store = Store(url)
    try:
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO orders (order_ref, state, step, created_at, updated_at,"
                    " next_attempt_at, run, step_attempts, customer_created, customer_id)"
                    " VALUES ('UIA202611-004220', 'duplicate', 'finished', :at, :at, :at,"
                    " 1, 0, :no, 10001)"
                ),
                {"at": datetime(2026, 11, 30, 12), "no": False},
            )
        store.migrate()
        with store.engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection), models.Base.metadata
            )
        assert [d for d in differences if "orders" in repr(d)] == []
        with store.write() as session:
            order = session.scalars(select(Order)).one()
            assert (order.state, order.customer_id) == (OrderState.DUPLICATE, 10001)
            assert (order.former_customer_id, order.site_decision) == (None, None)
            order.former_customer_id, order.former_customer_name = 10002, "Harriet Colburn"
            order.site_decision = SiteDecision.SAME_PERSON
        with store.read() as session:
            assert session.scalars(select(Order.site_decision)).one() == SiteDecision.SAME_PERSON

        command.downgrade(config, "0003")
        columns = {c["name"] for c in inspect(store.engine).get_columns("orders")}
        assert not SITE_COLUMNS & columns
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT order_ref FROM orders")).scalars().all() == [
                "UIA202611-004220"
            ]
    finally:
        store.close()


def test_the_site_decision_migration_upgrades_a_database_in_use(tmp_path: Path) -> None:
    upgrade_a_database_in_use(f"sqlite:///{tmp_path / 'in-use.db'}")


def upgrade_resolved_orders(url: str) -> None:
    """Orders resolved by hand before 0005 (a reason prefix) get the column set; others do not."""
    config = alembic_config(url)
    command.upgrade(config, "0004")
    store = Store(url)
    try:
        with store.engine.begin() as connection:
            for ref, reason in (
                ("UIA202611-004217", "resolved by hand by alice: made in PowerCode by phone"),
                ("UIA202611-004218", None),
            ):
                connection.execute(
                    text(
                        "INSERT INTO orders (order_ref, state, step, created_at, updated_at,"
                        " next_attempt_at, run, step_attempts, customer_created, reason)"
                        " VALUES (:ref, 'done', 'finished', :at, :at, :at, 1, 0, :no, :reason)"
                    ),
                    {"ref": ref, "reason": reason, "at": datetime(2026, 11, 30), "no": False},
                )
        store.migrate()
        with store.read() as session:
            resolved = dict(session.execute(select(Order.order_ref, Order.resolved_by_hand)).all())
        assert resolved == {"UIA202611-004217": True, "UIA202611-004218": False}
        command.downgrade(config, "0004")
        columns = {c["name"] for c in inspect(store.engine).get_columns("orders")}
        assert "resolved_by_hand" not in columns
    finally:
        store.close()


def test_orders_resolved_before_the_column_existed_are_marked_resolved(tmp_path: Path) -> None:
    upgrade_resolved_orders(f"sqlite:///{tmp_path / 'resolved.db'}")


RECONCILE_TABLES = {"reconcile_runs", "job_leases"}


def reconcile_tables_come_and_go(url: str) -> None:
    """0007 adds reconciliation's tables as the models describe them, and takes them away again."""
    config = alembic_config(url)
    command.upgrade(config, "0006")
    store = Store(url)
    try:
        assert not RECONCILE_TABLES & set(inspect(store.engine).get_table_names())
        store.migrate()
        assert set(inspect(store.engine).get_table_names()) >= RECONCILE_TABLES
        with store.engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection), models.Base.metadata
            )
        assert [d for d in differences if any(t in repr(d) for t in RECONCILE_TABLES)] == []
        command.downgrade(config, "0006")
        assert not RECONCILE_TABLES & set(inspect(store.engine).get_table_names())
    finally:
        store.close()


def test_the_reconciliation_migration_can_be_undone_and_redone(tmp_path: Path) -> None:
    reconcile_tables_come_and_go(f"sqlite:///{tmp_path / 'reconcile.db'}")


def test_the_message_actions_migration_links_old_callbacks_to_their_orders(tmp_path: Path) -> None:
    """0008 adds the routed messages' tables and gives old callbacks their order; undone cleanly."""
    url = f"sqlite:///{tmp_path / 'callbacks.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0008")
    store = Store(url)
    try:
        at = datetime(2026, 12, 1, 9)
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO orders (order_ref, state, step, created_at, updated_at,"
                    " next_attempt_at, run, step_attempts, customer_created)"
                    " VALUES ('UIA202611-004217', 'done', 'finished', :at, :at, :at, 1, 0, :no)"
                ),
                {"at": at, "no": False},
            )
            for ref, msg, order_id in (
                ("UIA202611-004217", "Project New Order", 1),
                ("UIA202611-004217", "Project Install Scheduled", None),  # stored unlinked
                ("UIA202611-004217", "Test", None),  # a test has no order, even with a known ref
                ("UIA202611-000009", "Port Complete", None),  # no such order: left as it is
            ):
                connection.execute(
                    text(
                        "INSERT INTO callbacks (received_at, order_ref, msg, outcome, order_id)"
                        " VALUES (:at, :ref, :msg, 'not_handled', :order_id)"
                    ),
                    {"at": at, "ref": ref, "msg": msg, "order_id": order_id},
                )
        store.migrate()
        with store.engine.connect() as connection:
            linked = connection.execute(text("SELECT msg, order_id FROM callbacks ORDER BY id"))
            assert [tuple(row) for row in linked] == [
                ("Project New Order", 1),
                ("Project Install Scheduled", 1),
                ("Test", None),
                ("Port Complete", None),
            ]
        assert {"message_actions", "message_action_attempts"} <= set(
            inspect(store.engine).get_table_names()
        )
        command.downgrade(config, "0008")
        tables = set(inspect(store.engine).get_table_names())
        assert not {"message_actions", "message_action_attempts"} & tables
        command.upgrade(config, "head")
    finally:
        store.close()


def upgrade_folded_names(url: str) -> None:
    """Names stored before 0010 are folded for the search; the search finds them without accents."""
    config = alembic_config(url)
    command.upgrade(config, "0009")
    store = Store(url)
    try:
        with store.engine.begin() as connection:
            for ref, name in (
                ("UIA202611-004218", "María José O'Neill-Ramírez"),
                ("UIA202611-004219", None),
            ):
                connection.execute(
                    text(
                        "INSERT INTO orders (order_ref, state, step, created_at, updated_at,"
                        " next_attempt_at, run, step_attempts, customer_created,"
                        " resolved_by_hand, customer_name)"
                        " VALUES (:ref, 'done', 'finished', :at, :at, :at, 1, 0, :no, :no, :name)"
                    ),
                    {"ref": ref, "name": name, "at": datetime(2026, 11, 30), "no": False},
                )
        store.migrate()
        with store.read() as session:
            folded = dict(
                session.execute(select(Order.order_ref, Order.customer_name_folded)).all()
            )
            found = session.scalars(
                select(Order.order_ref).where(queries.order_search("maria oneill"))
            ).all()
        assert folded == {"UIA202611-004218": "maria jose oneill ramirez", "UIA202611-004219": None}
        assert found == ["UIA202611-004218"]
        command.downgrade(config, "0009")
        columns = {c["name"] for c in inspect(store.engine).get_columns("orders")}
        assert "customer_name_folded" not in columns
    finally:
        store.close()


def test_names_stored_before_the_search_column_existed_are_found_without_accents(
    tmp_path: Path,
) -> None:
    upgrade_folded_names(f"sqlite:///{tmp_path / 'folded.db'}")
