"""Migration 0003 creates exactly the console tables the models describe, and can be undone."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from utopia_handler.app import Runtime
from utopia_handler.store.console_models import Base
from utopia_handler.store.db import alembic_config

CONSOLE_TABLES = {"users", "console_sessions", "login_failures", "audit_log", "config_versions"}


def test_the_schema_after_migrating_matches_the_models(console_runtime: Runtime) -> None:
    with console_runtime.store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert MigrationContext.configure(connection).get_current_heads() == ("0003",)
    ours = [d for d in differences if any(table in repr(d) for table in CONSOLE_TABLES)]
    assert ours == []


def test_the_console_migration_can_be_undone_and_redone(console_runtime: Runtime) -> None:
    config = alembic_config(console_runtime.store.url)
    command.downgrade(config, "0002")
    assert not CONSOLE_TABLES & set(inspect(console_runtime.store.engine).get_table_names())
    command.upgrade(config, "head")
    assert set(inspect(console_runtime.store.engine).get_table_names()) >= CONSOLE_TABLES
