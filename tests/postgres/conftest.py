"""PostgreSQL for the tests: real databases on the local server, created here and dropped after.

The server is TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test, trust auth);
its database is only used to create and drop `utopia_test_<random>` databases. Where no server
answers, every test here is skipped with a message saying so (or fails, where
TESTS_REQUIRE_SERVICES=1, as in CI).

`base_env` is overridden for this folder, so every core fixture (`runtime`, `service`,
`worker`...) runs on PostgreSQL here.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.postgres.processes import ProcessGroup
from utopia_handler.store.db import Store

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class PostgresServer:
    """Creates and drops throw-away databases on one server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def url(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create_database(self) -> str:
        name = f"utopia_test_{secrets.token_hex(5)}"
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        assert name is not None and name.startswith("utopia_test_")
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            # FORCE: a process a failed test left behind must not keep the database alive.
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            self.drop_database(self.url(name))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as error:
        shown = make_url(ADMIN_URL).render_as_string(hide_password=True)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = f"no PostgreSQL answers at {shown} ({reason}); set TEST_POSTGRES_URL"
        if os.environ.get("TESTS_REQUIRE_SERVICES") == "1":  # CI: a skip would hide the gap
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(ADMIN_URL)
    try:
        yield server
    finally:
        server.drop_all()


@pytest.fixture(scope="session")
def pg_session_url(postgres: PostgresServer) -> str:
    """One migrated database for the whole session."""
    url = postgres.create_database()
    store = Store(url)
    store.migrate()
    store.close()
    return url


@pytest.fixture
def pg_url(pg_session_url: str) -> str:
    """The session's migrated database, emptied for this test."""
    with psycopg.connect(pg_session_url, autocommit=True) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        # A connection left open by an earlier test would make TRUNCATE wait forever.
        connection.execute("SET lock_timeout = '10s'")
        connection.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(name) for name in tables)
            )
        )
    return pg_session_url


@pytest.fixture
def fresh_pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A new, empty database (no tables at all), dropped after the test."""
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture
def base_env(base_env: dict[str, str], pg_url: str) -> dict[str, str]:
    """The core settings, on PostgreSQL."""
    return {**base_env, "DATABASE_URL": pg_url}


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    """Children started by the test; any still running at the end are killed with their groups."""
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.kill_all()
        print(group.tails())  # pytest shows it only when the test failed
