"""On SQLite: migration 0011's indexes, and plans that never read a whole table for the claim,
the console's list, counts, search and Home (see tests/growth_plans.py)."""

from __future__ import annotations

from pathlib import Path

from tests.growth_plans import check_plans, fill, migration_adds_and_removes_the_indexes
from utopia_handler.store.db import Store


def test_the_growth_indexes_migration_applies_and_can_be_undone(tmp_path: Path) -> None:
    migration_adds_and_removes_the_indexes(f"sqlite:///{tmp_path / 'growth.db'}")


def test_the_claim_and_the_console_read_through_indexes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'plans.db'}")
    try:
        store.migrate()
        fill(store)
        check_plans(store)
    finally:
        store.close()
