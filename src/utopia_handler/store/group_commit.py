"""Group commit: writes that arrive together share one durable commit.

A durable commit costs a disk flush, and the flush, not the insert, is what limits how many
callbacks a second one process can acknowledge. So the first request that finds no commit under
way leads: it takes every write waiting (its own among them), runs them in one transaction and
commits. Requests that arrive meanwhile wait; when the commit ends, the ones it held have their
answer and one of the others leads the next batch. Nobody is answered before the commit that holds
their write, so a 2xx still means committed.

When a batch fails, its writes are run again one by one, each in its own transaction: one bad row
fails only its own request. No thread of its own: a request alone leads at once, with no hand-over.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

T = TypeVar("T")

# Opens a writing transaction that commits when its block ends (Store.write_connection).
Opener = Callable[[float | None], AbstractContextManager[Connection]]


class _Ticket(Generic[T]):
    """One write on its way: taken into a batch, then done with a result or an error."""

    __slots__ = ("done", "error", "result", "taken", "write")

    def __init__(self, write: Callable[[Connection], T]) -> None:
        self.write = write
        self.taken = False
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Runs writes of many threads of one process in shared transactions; see the module."""

    def __init__(self, opener: Opener) -> None:
        self._open = opener
        self._changed = threading.Condition()
        self._waiting: list[_Ticket[Any]] = []
        self._leading = False
        # Counted for tests and the benchmark: how many commits held how many writes.
        self.batches = 0
        self.writes = 0

    def run(self, write: Callable[[Connection], T], *, wait_seconds: float) -> T:
        """Run `write` in a transaction shared with writes of other threads; its result once committed.

        Raises what `write` or the commit raised, or an OperationalError when no commit took the
        write within `wait_seconds` (nothing of it is then stored).
        """
        ticket: _Ticket[T] = _Ticket(write)
        deadline = time.monotonic() + wait_seconds
        with self._changed:
            self._waiting.append(ticket)
            while self._leading and not ticket.done:
                if ticket.taken:
                    # In the commit under way; its own waits for the database are bounded.
                    self._changed.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._waiting.remove(ticket)
                    raise OperationalError(
                        "group commit", {}, sqlite3.OperationalError("database is busy")
                    )
                self._changed.wait(remaining)
            if not ticket.done:
                batch, self._waiting = self._waiting, []
                for waiting in batch:
                    waiting.taken = True
                self._leading = True
        if not ticket.done:
            self._lead(batch, wait_seconds)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]

    def _lead(self, batch: list[_Ticket[Any]], wait_seconds: float) -> None:
        try:
            self._write(batch, wait_seconds)
        except BaseException as error:
            for ticket in batch:
                if not ticket.done and ticket.error is None:
                    ticket.error = error
            raise
        finally:
            with self._changed:
                for ticket in batch:
                    ticket.done = True
                self.batches += 1
                self.writes += len(batch)
                self._leading = False
                self._changed.notify_all()

    def _write(self, batch: list[_Ticket[Any]], wait_seconds: float) -> None:
        began = False
        try:
            with self._open(wait_seconds) as connection:
                began = True
                results = [ticket.write(connection) for ticket in batch]
        except Exception as error:
            if len(batch) == 1 or not began:
                # The database did not take the transaction (busy, down): the same for each.
                for ticket in batch:
                    ticket.error = error
                return
            # Rolled back as a whole: each again on its own, so the others need not fail too.
            for ticket in batch:
                try:
                    with self._open(wait_seconds) as connection:
                        ticket.result = ticket.write(connection)
                except Exception as own_error:
                    ticket.error = own_error
            return
        for ticket, result in zip(batch, results, strict=True):
            ticket.result = result
