"""On PostgreSQL: migration 0011's indexes, and plans that never read a whole table for the
claim, the console's list, counts, search and Home (see tests/growth_plans.py)."""

from __future__ import annotations

from tests.growth_plans import check_plans, fill, migration_adds_and_removes_the_indexes
from utopia_handler.store.db import Store, database_url


def test_the_growth_indexes_migration_applies_and_can_be_undone(fresh_pg_url: str) -> None:
    migration_adds_and_removes_the_indexes(database_url(fresh_pg_url))


def test_the_claim_and_the_console_read_through_indexes(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        fill(store)
        check_plans(store)
    finally:
        store.close()
