"""Alembic environment: runs migrations on the URL the Store hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from utopia_handler.store import console_models  # noqa: F401 - registers the console's tables
from utopia_handler.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
