"""`utopia-handler db backup` and `db restore` on SQLite, with the real service running."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import new_order, post_callback, wait_for
from tests.test_processes import Serve, command_env, free_port, run_cli
from utopia_handler.emulators import Emulators
from utopia_handler.store.backup import Refused, backup_sqlite, restore_sqlite
from utopia_handler.timeutil import utcnow

FIRST, SECOND = "UIA202611-004217", "UIA202611-004218"
SECOND_SITE = "318002"


@pytest.fixture
def serve_env(base_env: dict[str, str]) -> Iterator[dict[str, str]]:
    yield command_env(base_env, FLASK_PORT=str(free_port()), POLL_SECONDS="0.1")


def orders_in(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as connection:  # closed: an open one blocks a restore
        return [row[0] for row in connection.execute("SELECT order_ref FROM orders ORDER BY id")]


def test_backup_while_running_then_restore_after_stopping_loses_and_doubles_nothing(
    serve_env: dict[str, str], emulators: Emulators, tmp_path: Path
) -> None:
    database = Path(serve_env["DATA_DIR"]) / "utopia-handler.db"
    backup = tmp_path / "backups" / "monday.db"
    service = Serve(serve_env, tmp_path)
    post_callback(service.url, new_order(FIRST))
    wait_for(lambda: len(emulators.smtp.messages) == 1)

    made = run_cli(["db", "backup", str(backup)], serve_env, tmp_path)  # while it runs
    assert made.returncode == 0, made.stderr
    assert f"backed up 1 orders to {backup}" in made.stdout and "integrity ok" in made.stdout
    assert backup.stat().st_mode & 0o077 == 0  # customers' data: owner only
    assert orders_in(backup) == [FIRST]
    again = run_cli(["db", "backup", str(backup)], serve_env, tmp_path)
    assert again.returncode == 1 and "--overwrite" in again.stderr

    post_callback(service.url, new_order(SECOND))  # arrives after the backup
    wait_for(lambda: len(emulators.smtp.messages) == 2)
    refused = run_cli(["db", "restore", "--yes", str(backup)], serve_env, tmp_path)
    assert refused.returncode == 1 and "in use; stop the services first" in refused.stderr
    assert orders_in(database) == [FIRST, SECOND]  # untouched
    assert service.terminate() == 0

    restored = run_cli(["db", "restore", "--yes", str(backup)], serve_env, tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert "restored 1 orders" in restored.stdout
    [aside] = database.parent.glob("utopia-handler.db.before-restore-*")
    assert str(aside) in restored.stdout
    assert orders_in(database) == [FIRST]
    assert orders_in(aside) == [FIRST, SECOND]  # the newer state is kept, not thrown away

    # UTOPIA sends the lost order again: PowerCode already has the customer, so nothing is
    # created twice; the order ends as a duplicate for a person to look at.
    service = Serve(serve_env, tmp_path)
    post_callback(service.url, new_order(SECOND))
    wait_for(lambda: len(emulators.smtp.messages) == 3)
    assert service.terminate() == 0
    created = [
        c for c in emulators.powercode.customers.values() if c.get("extAccountID") == SECOND_SITE
    ]
    assert len(created) == 1
    assert "Duplicate Customer" in str(emulators.smtp.messages[-1]["Subject"])


def test_restore_refuses_what_is_not_a_sound_handler_backup(tmp_path: Path) -> None:
    database = tmp_path / "data" / "utopia-handler.db"
    url = f"sqlite:///{database}"
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    foreign = tmp_path / "foreign.db"
    with closing(sqlite3.connect(foreign)) as connection:
        connection.execute("CREATE TABLE t (x)")
    newer = tmp_path / "newer.db"
    with closing(sqlite3.connect(newer)) as connection, connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        connection.execute("INSERT INTO alembic_version VALUES ('9999')")

    with pytest.raises(Refused, match="is not a database SQLite can read"):
        restore_sqlite(url, garbage, utcnow())
    with pytest.raises(Refused, match="not a utopia-handler database"):
        restore_sqlite(url, foreign, utcnow())
    with pytest.raises(Refused, match="newer version of utopia-handler"):
        restore_sqlite(url, newer, utcnow())
    assert not database.exists()  # nothing was written


def test_backup_and_restore_say_what_to_use_on_postgresql(tmp_path: Path) -> None:
    url = "postgresql://handler@db.isp.example/handler"
    with pytest.raises(Refused, match="pg_dump"):
        backup_sqlite(url, tmp_path / "x.db")
    with pytest.raises(Refused, match="pg_restore"):
        restore_sqlite(url, tmp_path / "x.db", utcnow())
