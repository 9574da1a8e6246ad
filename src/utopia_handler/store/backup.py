"""Data safety: SQLite backup and restore, and copying an installation to another database.

Backups use SQLite's online backup API, so they are consistent while the service runs. A restore
refuses while anything else has the database open, and first saves the current file aside.
`copy_database` moves every table (found by reflection, so tables added later are included) into
a freshly migrated, empty database, typically PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Integer, MetaData, Table, func, insert, select, text
from sqlalchemy.engine import Connection, make_url

from utopia_handler.store.db import Store, alembic_config, database_url

COPY_BATCH = 1000


class Refused(Exception):
    """The operation was not done; the message says why and what to do instead."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    size_bytes: int
    orders: int


@dataclass(frozen=True)
class RestoreReport:
    orders: int
    revision: str
    saved_aside: Path | None


@dataclass(frozen=True)
class CopyReport:
    rows: dict[str, int]


# SQLite backup and restore -----------------------------------------------------------------------


def sqlite_file(url: str) -> Path:
    """The database file of a SQLite URL, or Refused for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise Refused(
            "db backup and db restore work on SQLite; for PostgreSQL use pg_dump and "
            "pg_restore (see docs/operations.md)"
        )
    if not parsed.database or parsed.database == ":memory:":
        raise Refused("DATABASE_URL names no database file")
    return Path(parsed.database)


def backup_sqlite(url: str, destination: Path, *, overwrite: bool = False) -> BackupReport:
    """Copy the live SQLite database to `destination`, consistent even while the service runs."""
    source = sqlite_file(url)
    if not source.is_file():
        raise Refused(f"there is no database at {source}")
    if destination.exists() and not overwrite:
        raise Refused(f"{destination} exists; choose another name or add --overwrite")
    if destination.exists() and destination.resolve() == source.resolve():
        raise Refused("the backup cannot overwrite the database itself")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    # Owner-only from the first byte: a backup holds customers' personal data.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        with (
            closing(sqlite3.connect(source, timeout=30)) as live,
            closing(sqlite3.connect(partial)) as copy,
        ):
            live.backup(copy)
            # One self-contained file: no -wal beside it to forget when copying it elsewhere.
            copy.execute("PRAGMA journal_mode=DELETE")
            _check_integrity(copy, str(destination))
            orders = _count_orders(copy)
        _fsync(partial)
        os.replace(partial, destination)
        _fsync(destination.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupReport(destination, destination.stat().st_size, orders)


def restore_sqlite(url: str, backup: Path, now: datetime) -> RestoreReport:
    """Replace the SQLite database with `backup`, after saving the current one aside."""
    target = sqlite_file(url)
    if not backup.is_file():
        raise Refused(f"there is no backup at {backup}")
    if target.exists() and backup.resolve() == target.resolve():
        raise Refused("the backup is the database itself")
    with closing(sqlite3.connect(backup.resolve().as_uri() + "?mode=ro", uri=True)) as source:
        try:
            _check_integrity(source, str(backup))
        except sqlite3.DatabaseError as error:
            raise Refused(f"{backup} is not a database SQLite can read ({error})") from None
        revision = _revision(source, str(backup))
        known = {script.revision for script in _scripts().walk_revisions()}
        if revision not in known:
            raise Refused(
                f"{backup} is from a newer version of utopia-handler (schema {revision}); "
                "install that version to restore it"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with _sole_connection(target) as live:
            saved_aside = None
            if _has_tables(live):
                saved_aside = target.with_name(f"{target.name}.before-restore-{now:%Y%m%dT%H%M%SZ}")
                os.close(os.open(saved_aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                with closing(sqlite3.connect(saved_aside)) as aside:
                    live.backup(aside)
                    aside.execute("PRAGMA journal_mode=DELETE")
                    _check_integrity(aside, str(saved_aside))
                _fsync(saved_aside)
            source.backup(live)
            _check_integrity(live, str(target))
            orders = _count_orders(live)
    _fsync(target)
    return RestoreReport(orders=orders, revision=revision, saved_aside=saved_aside)


@contextmanager
def _sole_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that holds the database exclusively, or Refused if anyone else has it open."""
    connection = sqlite3.connect(path, timeout=1, isolation_level=None)
    try:
        try:
            # A database cannot leave WAL mode while another connection is open on it: the
            # cheapest reliable test that no service (or sqlite3 shell) is using the file.
            mode = connection.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError:
            mode = "busy"
        if mode != "delete":
            raise Refused(
                f"{path} is in use; stop the services first "
                "(systemctl stop utopia-handler-web utopia-handler-worker)"
            )
        # Keep the lock from the first write until we close, so nobody opens it half-restored.
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        connection.execute("BEGIN EXCLUSIVE")
        connection.execute("COMMIT")
        yield connection
    finally:
        connection.close()


def in_use(path: Path) -> bool:
    """True when some other connection (a running service, a shell) has the database open."""
    if not path.exists():
        return False
    try:
        with _sole_connection(path):
            pass
    except Refused:
        return True
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")  # back to what the service uses
    return False


def _check_integrity(connection: sqlite3.Connection, label: str) -> None:
    rows = connection.execute("PRAGMA integrity_check").fetchall()
    if rows != [("ok",)]:
        raise Refused(f"{label} failed SQLite's integrity check: {rows[0][0]}")


def _revision(connection: sqlite3.Connection, label: str) -> str:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        row = None
    if row is None:
        raise Refused(f"{label} is not a utopia-handler database (no schema version)")
    return str(row[0])


def _has_tables(connection: sqlite3.Connection) -> bool:
    return int(connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) > 0


def _count_orders(connection: sqlite3.Connection) -> int:
    try:
        return int(connection.execute("SELECT count(*) FROM orders").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def _fsync(path: Path) -> None:
    """Make a finished file (or a directory's entry for it) durable before we report success."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Copying to another database ---------------------------------------------------------------------


def copy_database(source_url: str, target_url: str) -> CopyReport:
    """Copy every table into an empty database (migrated here first); all or nothing."""
    source_url, target_url = database_url(source_url), database_url(target_url)
    if make_url(source_url) == make_url(target_url):
        raise Refused("the source and the target are the same database")
    source, target = Store(source_url), Store(target_url)
    try:
        if source.is_sqlite:
            path = sqlite_file(source_url)
            if not path.is_file():
                raise Refused(f"there is no database at {path}")
            if in_use(path):
                raise Refused(
                    f"{path} is in use; stop the services first so no callback arrives "
                    "during the copy (systemctl stop utopia-handler-web utopia-handler-worker)"
                )
        head = _scripts().get_current_head()
        with source.engine.connect() as connection:
            revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
        if revision != head:
            raise Refused(
                f"the source database is at schema {revision}, this version needs {head}; "
                "run `utopia-handler db upgrade` first"
            )
        target.migrate()
        report = _copy_tables(source, target)
        if target.engine.dialect.name == "postgresql":
            # Fresh statistics: without them the planner guesses at the copied tables' sizes
            # and may read a whole table where an index would do, until autovacuum gets round.
            with target.engine.connect() as connection:
                connection.execute(text("ANALYZE"))
                connection.commit()
        return report
    finally:
        source.close()
        target.close()


def _copy_tables(source: Store, target: Store) -> CopyReport:
    source_meta, target_meta = MetaData(), MetaData()
    source_meta.reflect(source.engine)
    target_meta.reflect(target.engine)
    tables = [table for table in target_meta.sorted_tables if table.name != "alembic_version"]
    rows: dict[str, int] = {}
    with source.engine.connect() as reader, target.engine.begin() as writer:
        for table in tables:
            if writer.scalar(select(func.count()).select_from(table)):
                raise Refused(
                    f"the target database is not empty (table {table.name} has rows); "
                    "copy only into a new, empty database"
                )
        for table in tables:
            if table.name not in source_meta.tables:
                rows[table.name] = 0  # a table this version has that the source never had
                continue
            rows[table.name] = _copy_table(reader, writer, source_meta.tables[table.name], table)
        if target.engine.dialect.name == "postgresql":
            _reset_sequences(writer, tables)
        for table in tables:
            copied = writer.scalar(select(func.count()).select_from(table))
            if copied != rows[table.name]:
                raise Refused(f"table {table.name}: {copied} rows arrived of {rows[table.name]}")
    return CopyReport(rows)


def _copy_table(reader: Connection, writer: Connection, source: Table, target: Table) -> int:
    names = [column.name for column in target.columns]
    missing = [name for name in names if name not in source.columns]
    if missing or len(source.columns) != len(names):
        raise Refused(f"table {target.name} differs between the databases; migrate both first")
    for column in target.columns:
        if isinstance(column.type, JSON):
            # Reflected JSON would store None as the JSON value `null`; keep SQL NULL as NULL.
            column.type = JSON(none_as_null=True)
    query = select(*(source.columns[name] for name in names)).order_by(*source.primary_key)
    count = 0
    result = reader.execution_options(yield_per=COPY_BATCH).execute(query)
    for chunk in result.mappings().partitions(COPY_BATCH):
        writer.execute(insert(target), [dict(row) for row in chunk])
        count += len(chunk)
    return count


def _reset_sequences(writer: Connection, tables: list[Table]) -> None:
    """Make PostgreSQL hand out ids after the copied ones (explicit ids do not move sequences)."""
    quote = writer.dialect.identifier_preparer.quote
    for table in tables:
        for column in table.primary_key.columns:
            if not isinstance(column.type, Integer):
                continue
            sequence = writer.scalar(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": quote(table.name), "column": column.name},
            )
            if sequence is None:
                continue
            # Names come from the database's own catalogue and are quoted; no user input here.
            writer.execute(
                text(
                    f"SELECT setval(:sequence, COALESCE(MAX({quote(column.name)}), 0) + 1, false) "  # noqa: S608
                    f"FROM {quote(table.name)}"
                ),
                {"sequence": sequence},
            )
