"""The database connection: engine set-up per dialect, sessions and migrations.

The caller owns the transaction: `store.write()` and `store.read()` are context managers that
commit (or roll back) when the block ends.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from utopia_handler.store.group_commit import GroupCommit

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
T = TypeVar("T")


class Store:
    """Owns the engine and hands out sessions; nothing connects until first use."""

    def __init__(self, url: str) -> None:
        self.url = database_url(url)
        self.engine = _create_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        # On SQLite, reads begin a plain (deferred) transaction so they never wait for the writer.
        reader_engine = (
            self.engine.execution_options(sqlite_begin="BEGIN") if self.is_sqlite else self.engine
        )
        self._reader = sessionmaker(reader_engine, expire_on_commit=False)
        self._impatient_writers: dict[int, sessionmaker[Session]] = {}
        self._impatient_engines: dict[int, Engine] = {}
        # Re-entrant: a nested write in one thread keeps the behaviour it had without the queue.
        self._write_gate = threading.RLock()
        self._together = GroupCommit(lambda wait: self.write_connection(wait_seconds=wait))

    def write_together(self, write: Callable[[Connection], T], *, wait_seconds: float) -> T:
        """Run `write` in a transaction shared with other threads' writes (store/group_commit.py).

        Returns its result once the shared transaction is committed; raises its error, or an
        OperationalError when the database stayed busy for `wait_seconds`.
        """
        return self._together.run(write, wait_seconds=wait_seconds)

    @contextmanager
    def write(self, *, wait_seconds: float | None = None) -> Iterator[Session]:
        """A transaction that may write; committed when the block ends without error.

        `wait_seconds` caps how long it waits for a lock held by someone else (default: 30 s on
        SQLite, the server's own on PostgreSQL) before failing with an OperationalError.
        """
        factory = self._writer if wait_seconds is None else self._impatient(wait_seconds)
        with self._writer_turn(wait_seconds), factory() as session, session.begin():
            if wait_seconds is not None and not self.is_sqlite:
                # SET cannot take bind parameters; the value is a number we computed.
                ms = max(1, int(wait_seconds * 1000))
                session.execute(text(f"SET LOCAL lock_timeout = {ms}"))
            yield session

    @contextmanager
    def write_connection(self, *, wait_seconds: float | None = None) -> Iterator[Connection]:
        """As `write`, but a bare pooled connection: no ORM session, for the callback's path.

        The statements are Core or plain SQL; a session's set-up and unit of work would cost more
        than the inserts themselves.
        """
        engine: Engine = self.engine
        if wait_seconds is not None and self.is_sqlite:
            ms = max(1, int(wait_seconds * 1000))
            engine = self._impatient_engines.get(ms) or self._impatient_engines.setdefault(
                ms, self.engine.execution_options(sqlite_busy_ms=ms, sqlite_eager=True)
            )
        with self._writer_turn(wait_seconds), engine.begin() as connection:
            if wait_seconds is not None and not self.is_sqlite:
                ms = max(1, int(wait_seconds * 1000))
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
            yield connection

    @contextmanager
    def _writer_turn(self, wait_seconds: float | None) -> Iterator[None]:
        """On SQLite, this process's writers queue here, in order, for the one write lock.

        SQLite makes a busy writer sleep and retry with growing pauses (up to 100 ms each), so
        threads of one process fighting over the lock waste most of their time asleep; a queue
        hands the lock over at once. Other processes still meet SQLite's own busy wait.
        """
        if not self.is_sqlite:
            yield
            return
        if not self._write_gate.acquire(timeout=30.0 if wait_seconds is None else wait_seconds):
            raise OperationalError(
                "BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")
            )
        try:
            yield
        finally:
            self._write_gate.release()

    def _impatient(self, wait_seconds: float) -> sessionmaker[Session]:
        """A writer session factory whose SQLite busy wait is `wait_seconds` (cached per value)."""
        ms = max(1, int(wait_seconds * 1000))
        factory = self._impatient_writers.get(ms)
        if factory is None:
            engine = (
                self.engine.execution_options(sqlite_busy_ms=ms) if self.is_sqlite else self.engine
            )
            factory = sessionmaker(engine, expire_on_commit=False)
            self._impatient_writers[ms] = factory
        return factory

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction, ended when the block ends; loaded rows stay readable after."""
        with self._reader() as session:
            yield session

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            # Through the reader: on SQLite a writer's BEGIN IMMEDIATE would wait for the lock.
            with self._reader() as session:
                session.execute(text("SELECT 1"))
            return True
        except Exception:  # any driver failure means "does not answer"
            return False

    def migrate(self) -> None:
        """Bring the schema to the newest migration, one process at a time."""
        # Web and worker processes (on several hosts, with PostgreSQL) start together; without a
        # lock two of them could apply the same migration at once and one would fail half-way.
        if self.is_sqlite:
            with _file_lock(_sqlite_path(self.url)):
                command.upgrade(alembic_config(self.url), "head")
            return
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            try:
                command.upgrade(alembic_config(self.url), "head")
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK}
                )

    def close(self) -> None:
        self.engine.dispose()


def database_url(url: str) -> str:
    """The URL SQLAlchemy should use: plain `postgresql://` means the psycopg 3 driver here."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


# Any fixed 64-bit number; it names this application's migration lock among advisory locks.
_MIGRATION_LOCK = 0x75746F706961


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


@contextmanager
def _file_lock(database: Path | None) -> Iterator[None]:
    """An exclusive lock on a file beside the database, where the platform has flock."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: one process at a time is then the operator's job
        yield
        return
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alembic_config(url: str) -> Config:
    """An Alembic configuration that needs no alembic.ini on disk."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=20,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling is lazy).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Switching to WAL needs the file to itself; when someone else holds it whole (a backup,
        # an open `sqlite3` shell), waiting here would hang a callback for 30 s whatever its own
        # wait is. WAL is kept in the file, so it is in force already, or the next connection
        # sets it; the transaction's own busy wait (in _on_begin) decides what happens now.
        cursor.execute("PRAGMA busy_timeout=100")
        with contextlib.suppress(sqlite3.OperationalError):
            cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we acknowledge a callback, even across power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        # Set per transaction because pooled connections are shared: the callback endpoint waits
        # less than a worker (Store.write(wait_seconds=...)), everyone else gets the 30 s.
        busy_ms = int(options.get("sqlite_busy_ms", 30000))
        begin = options.get("sqlite_begin", "BEGIN IMMEDIATE")
        if options.get("sqlite_eager"):
            _begin_eagerly(connection, begin, busy_ms)
            return
        connection.exec_driver_sql(f"PRAGMA busy_timeout={busy_ms}")
        # Writers take the lock up front: a deferred transaction that later writes can fail
        # at once with SQLITE_BUSY instead of waiting its turn.
        connection.exec_driver_sql(begin)

    return engine


def _begin_eagerly(connection: Any, begin: str, busy_ms: int) -> None:
    """Begin, trying again every half millisecond while another process holds the write lock.

    SQLite's own busy wait sleeps 1, 2, 5, 10 ... up to 100 ms between tries: fine for a worker,
    but a callback waiting behind `serve`'s worker child (another process, so the in-process
    queue does not help) would lose most of its time asleep while the worker takes the lock again
    and again. Only the callback's path asks for this (Store.write_connection): it wins the lock
    over the worker's patient tries, which is the priority wanted. With group commit only one
    thread per process tries at a time.
    """
    raw = connection.connection.dbapi_connection  # plain sqlite3: this runs per callback batch
    raw.execute("PRAGMA busy_timeout=0")
    deadline = time.monotonic() + busy_ms / 1000
    while True:
        try:
            raw.execute(begin)
            break
        except sqlite3.OperationalError as error:
            busy = "locked" in str(error) or "busy" in str(error)
            if not busy or time.monotonic() >= deadline:
                raise OperationalError(begin, {}, error) from error
        time.sleep(0.0005)
    # Statements inside the transaction keep SQLite's own wait (a checkpoint, say).
    raw.execute(f"PRAGMA busy_timeout={busy_ms}")


@cache
def _script_heads(script_location: str) -> frozenset[str]:
    config = alembic_config("sqlite://")
    config.set_main_option("script_location", script_location)
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def migration_status(store: Store) -> tuple[frozenset[str], frozenset[str]]:
    """(revisions the database is at, newest revisions the code has)."""
    location = alembic_config(store.url).get_main_option("script_location")
    assert location is not None
    with store.engine.connect() as connection:
        current = frozenset(MigrationContext.configure(connection).get_current_heads())
    return current, _script_heads(location)
