"""On PostgreSQL: migration 0011's indexes, and plans that never read a whole table for the
claim, the console's list, counts, search and Home (see tests/growth_plans.py)."""

from __future__ import annotations

from sqlalchemy import select

from tests.growth_plans import check_plans, fill, migration_adds_and_removes_the_indexes
from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.db import Store, database_url
from utopia_handler.store.models import Order, OrderState, Step
from utopia_handler.timeutil import utcnow


def test_the_growth_indexes_migration_applies_and_can_be_undone(fresh_pg_url: str) -> None:
    migration_adds_and_removes_the_indexes(database_url(fresh_pg_url))


def test_the_claim_and_the_console_read_through_indexes(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        fill(store)
        check_plans(store)
    finally:
        store.close()


def test_the_bounded_search_finds_the_same_on_postgresql(runtime: Runtime) -> None:
    """A whole ref, a name's beginning (accents and case folded) and numbers find any order;
    parts of refs and other words of names only the orders from `scan_from` on."""
    now = utcnow()
    with runtime.store.write() as session:
        for number, name in enumerate(
            ("María José O'Neill-Ramírez", "Dale Whitfield", "Ana Nowak")
        ):
            session.add(
                Order(
                    order_ref=f"UIA202611-00421{number}", state=OrderState.DONE,
                    step=Step.FINISHED, created_at=now, updated_at=now, next_attempt_at=now,
                    customer_name=name, customer_id=10_004 + number, site_id=f"9911{number}",
                )
            )  # fmt: skip

    def found(text: str, scan_from: int | None) -> list[str]:
        with runtime.store.read() as session:
            matching = queries.order_search_ids(text, scan_from=scan_from)
            query = select(Order.order_ref).where(matching).order_by(Order.order_ref)
            return list(session.scalars(query))

    for text in ("uia202611-004210", "MARIA JO", "maría josé o'neill", "PC#10004", "99110"):
        assert found(text, scan_from=3) == ["UIA202611-004210"], text
    assert found("ramirez", scan_from=3) == []  # another word, among orders not read
    assert found("ramirez", scan_from=1) == ["UIA202611-004210"]
    assert found("00421", scan_from=3) == ["UIA202611-004212"]
    assert found("nowak ana", scan_from=None) == ["UIA202611-004212"]
    assert found("100%_", scan_from=None) == []  # LIKE's wildcards are only characters here
