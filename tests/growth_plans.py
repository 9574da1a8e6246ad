"""What the growth tests check on SQLite and on PostgreSQL alike: migration 0011 adds (and takes
back) the indexes, and the claim, the console's list, counts and search read through indexes.

A plan is read with EXPLAIN QUERY PLAN (SQLite) or EXPLAIN (PostgreSQL, sequential scans
discouraged so that an index that is missing or unusable shows as a Seq Scan)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import event, insert, inspect, text
from sqlalchemy.orm import Session

from utopia_handler.store import queries
from utopia_handler.store.db import Store, alembic_config
from utopia_handler.store.models import (
    MessageAction,
    Notification,
    Order,
    OrderState,
    Step,
)
from utopia_handler.timeutil import utcnow
from utopia_handler.web.console.pages import at_a_glance

NEW_INDEXES = {
    "orders": {"ix_orders_state_id", "ix_orders_customer_name_folded"},
    "callbacks": {"ix_callbacks_outcome_received"},
}
TABLES = ("orders", "message_actions", "notifications", "callbacks")


def _indexes(store: Store) -> dict[str, set[str]]:
    found = inspect(store.engine)
    return {table: {i["name"] for i in found.get_indexes(table)} for table in NEW_INDEXES}


def migration_adds_and_removes_the_indexes(url: str) -> None:
    """0010 -> 0011 on a database with an order in it, then down and up again."""
    config = alembic_config(url)
    command.upgrade(config, "0010")
    store = Store(url)
    try:
        now = utcnow()
        with store.engine.begin() as connection:
            connection.execute(
                insert(Order).values(
                    order_ref="UIA202611-004217", state=OrderState.DONE, step=Step.FINISHED,
                    created_at=now, updated_at=now, next_attempt_at=now, run=1, step_attempts=0,
                    customer_created=True, shadow=False, resolved_by_hand=False,
                    customer_name_folded="avery lindqvist",
                )
            )  # fmt: skip
        assert not any(_indexes(store)[t] & NEW_INDEXES[t] for t in NEW_INDEXES)
        command.upgrade(config, "0011")
        assert all(NEW_INDEXES[t] <= _indexes(store)[t] for t in NEW_INDEXES)
        with store.read() as session:
            found = session.scalars(
                Order.__table__.select().where(queries.order_search_ids("avery l"))
            ).all()
            assert len(found) == 1
        command.downgrade(config, "0010")
        assert not any(_indexes(store)[t] & NEW_INDEXES[t] for t in NEW_INDEXES)
        command.upgrade(config, "head")
        assert all(NEW_INDEXES[t] <= _indexes(store)[t] for t in NEW_INDEXES)
    finally:
        store.close()


def fill(store: Store, orders: int = 3000) -> None:
    """Orders in every state, mostly done, a few due; e-mails and routed actions beside them."""
    now = utcnow()
    # As in use: nearly all done; a few waiting for a person or retrying later.
    states = [OrderState.DONE] * 98 + [OrderState.WAITING, OrderState.IN_PROGRESS]
    rows = [
        {
            "order_ref": f"UIA202611-{n:06d}", "state": states[n % len(states)],
            "step": Step.FINISHED, "created_at": now - timedelta(minutes=n),
            "updated_at": now, "next_attempt_at": now + timedelta(hours=1), "run": 1,
            "step_attempts": 0, "customer_created": True, "shadow": False,
            "resolved_by_hand": False, "customer_name": f"Name{n} Person",
            "customer_name_folded": f"name{n} person", "site_id": str(100_000 + n),
        }
        for n in range(orders)
    ]  # fmt: skip
    rows[-1].update(state=OrderState.RECEIVED, next_attempt_at=now - timedelta(minutes=1))
    with store.engine.begin() as connection:
        connection.execute(insert(Order), rows)
        connection.execute(
            insert(Notification),
            [
                {
                    "order_id": n + 1, "kind": "success", "message_id": f"success.{n}",
                    "context": {}, "state": "sent" if n else "pending", "created_at": now,
                    "next_attempt_at": now, "attempts": 1,
                }
                for n in range(0, orders, 2)
            ],
        )  # fmt: skip
        connection.execute(
            insert(MessageAction),
            [
                {
                    "order_id": n + 1, "key": f"k{n}", "msg": "Port Complete",
                    "action": "notify", "state": "done" if n else "pending", "run": 1,
                    "attempts": 0, "created_at": now, "updated_at": now,
                    "next_attempt_at": now - timedelta(minutes=1),
                }
                for n in range(0, orders, 3)
            ],
        )  # fmt: skip
    if not store.is_sqlite:
        with store.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


@contextmanager
def captured(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements run inside the block, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def listen(_c: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", listen)


def plan(store: Store, statement: str, params: Any) -> list[str]:
    """The database's plan of one statement, a line per step."""
    with store.engine.connect() as connection:
        if store.is_sqlite:
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            # "parent:detail": a step with parent 0 is the statement's outer loop.
            return [f"{row[1]}:{row[-1]}" for row in rows]
        connection.exec_driver_sql("SET enable_seqscan = off")
        return [str(row[0]) for row in connection.exec_driver_sql("EXPLAIN " + statement, params)]


def full_scans(store: Store, statement: str, lines: list[str]) -> list[str]:
    """The steps that read a whole table: a PostgreSQL Seq Scan; a SQLite SCAN, except the
    outer loop of a list newest first that walks the primary key in that order and stops at
    its LIMIT (no sort after it)."""
    tables = "|".join(TABLES)
    if not store.is_sqlite:
        return [line for line in lines if re.search(rf"Seq Scan on ({tables})\b", line)]
    walks = re.search(r"ORDER BY orders\.id DESC\s+LIMIT", statement) is not None and not any(
        "USE TEMP B-TREE" in line for line in lines
    )
    return [
        line
        for line in lines
        if re.fullmatch(rf"\d+:SCAN ({tables})", line.strip())
        and not (walks and line.strip() == "0:SCAN orders")
    ]


def plans_of(store: Store, run: Callable[[Session], object]) -> list[tuple[str, list[str]]]:
    """Each statement `run` sends, with its plan; the transaction is rolled back."""
    with captured(store) as seen, Session(store.engine) as session:
        run(session)
        session.rollback()
    return [(statement, plan(store, statement, params)) for statement, params in seen]


def operations() -> dict[str, tuple[Callable[[Session], object], set[str]]]:
    """What grows with the orders stored, each with the indexes its plan must name."""
    now, lease = utcnow(), timedelta(minutes=5)
    # A rare state: for the common one (done) PostgreSQL rightly walks the primary key instead.
    waiting = [Order.state == OrderState.WAITING]
    return {
        "claim of orders": (
            lambda s: queries.claim_due_orders(s, "w", 8, now, lease),
            {"ix_orders_due"},
        ),
        "claim of routed messages": (
            lambda s: queries.claim_due_message_actions(s, "w", 8, now, lease),
            {"ix_message_actions_due"},
        ),
        "claim of e-mails": (
            lambda s: queries.claim_due_notifications(s, "w", 8, now, lease),
            {"ix_notifications_due"},
        ),
        "the newest page": (lambda s: queries.page_of_orders(s, [], 50), set()),
        "a page far back": (lambda s: queries.page_of_orders(s, [], 50, before=1500), set()),
        "a newer page": (lambda s: queries.page_of_orders(s, [], 50, after=1000), set()),
        "a page of orders waiting for a person, far back": (
            lambda s: queries.page_of_orders(s, waiting, 50, before=1500),
            {"ix_orders_state_id"},
        ),
        "the counts": (lambda s: queries.count_orders_bounded(s), {"ix_orders_state_id"}),
        "home": (lambda s: at_a_glance(s, now), {"ix_orders_state_id", "ix_orders_due"}),
        "a search by ref or name": (
            lambda s: queries.page_of_orders(
                s, [queries.order_search_ids("UIA202611-000017", scan_from=2900)], 50
            ),
            ref_indexes() | {"ix_orders_customer_name_folded"},
        ),
    }


def check_plans(store: Store) -> None:
    """No operation reads a whole table, and each uses the indexes made for it."""
    for name, (run, wanted) in operations().items():
        statements = plans_of(store, run)
        assert statements, name
        lines = [line for _, steps in statements for line in steps]
        for statement, steps in statements:
            assert full_scans(store, statement, steps) == [], (name, statement, steps)
        used = {i for i in wanted if any(re.search(rf"\b{i}\b", line) for line in lines)}
        if wanted & ref_indexes():
            assert used & ref_indexes(), (name, lines)
            wanted = wanted - ref_indexes()
        assert wanted <= used, (name, wanted - used, lines)


def ref_indexes() -> set[str]:
    return {"sqlite_autoindex_orders_1", "orders_order_ref_key"}
