"""How cost grows with the orders stored: 1k, 10k, 100k and 1M orders written straight into the
database, and at each size the worker's claim, a callback, and the console's pages timed.

The stored orders look like three years of use: most done, a few duplicates, not ours, ignored
or recorded; among the newest, as many at any size, 40 waiting for a person, 30 retrying later
and 12 due now (people and retries finish orders: they do not pile up with the years). Each has
its new-order callback; every fourth a staff e-mail sent; every twenty-fifth a routed message's
action. Step attempts are left out: neither the claim nor the console's list or search reads
them (the order page reads one order's).

The claim runs in this process against the store (then is rolled back, so every repeat claims
the same rows); the callback and the console pages go through HTTP to the service, as a sender
and a person meet them.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from utopia_handler.addresses import normalise_name
from utopia_handler.store import queries
from utopia_handler.store.db import Store
from utopia_handler.timeutil import utcnow

FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000)
SMOKE_SIZES = (1_000, 10_000)
DUE_NOW = 12  # orders due at any size: a quiet hour's new work
CLAIM_LIMIT = 8  # a worker's slots
CHUNK = 20_000
PASSWORD = secrets.token_urlsafe(18)  # a throw-away user in a throw-away database

FIRST = ["Avery", "María José", "Dale", "Tobias", "Harriet", "Łukasz", "Siobhán", "Noah", "Zoë",
         "Emeka", "Priya", "Jonas", "Ingrid", "Mateo", "Aiko", "Chloé", "Rahul", "Fatima",
         "Björn", "Grace", "Kwame", "Lucía", "Owen", "Yusuf", "Nora", "Dmitri", "Ana", "Liam"]  # fmt: skip
LAST = ["Lindqvist", "O'Neill-Ramírez", "Whitfield", "Wrenfield", "Colburn", "Nowak",
        "Ó Briain", "Okafor", "Sharma", "Müller", "García", "Tanaka", "Dubois", "Mensah",
        "Petrov", "Haddad", "Kowalski", "Jensen", "Silva", "Nakamura", "Fischer", "Moreau",
        "Brennan", "Achebe", "Castillo", "Eriksen", "Novak", "Delgado"]  # fmt: skip
# (state, step, share): most orders are long done.
# (state, step, share) of the orders of the past: most are long done.
STATES = [
    ("done", "finished", 0.91),
    ("duplicate", "finished", 0.03),
    ("recorded", "lookup_contract", 0.03),
    ("not_ours", "finished", 0.01),
    ("ignored", "choose_plans", 0.02),
]
# Orders not finished are among the newest, and as many at any size: people and retries finish
# them; they do not pile up with the years.
WAITING_NOW = 40  # for a person
RETRYING_NOW = 30  # in progress, their next try later
ORDER_COLUMNS = [
    "id",
    "order_ref",
    "state",
    "step",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "run",
    "step_attempts",
    "retrying_since",
    "reason",
    "site_id",
    "customer_name",
    "customer_name_folded",
    "customer_id",
    "customer_created",
    "shadow",
    "resolved_by_hand",
    "purged_at",
]
CALLBACK_COLUMNS = [
    "id",
    "received_at",
    "order_ref",
    "msg",
    "event",
    "outcome",
    "remote_addr",
    "body",
    "order_id",
]
NOTIFICATION_COLUMNS = [
    "id",
    "order_id",
    "kind",
    "message_id",
    "context",
    "state",
    "created_at",
    "next_attempt_at",
    "attempts",
    "sent_at",
]
ACTION_COLUMNS = [
    "id",
    "order_id",
    "key",
    "msg",
    "event",
    "action",
    "state",
    "run",
    "attempts",
    "created_at",
    "updated_at",
    "next_attempt_at",
]


@dataclass
class Operation:
    name: str
    measure: Callable[[], float]  # one timed run, in seconds


def _ref(order_id: int, created: datetime) -> str:
    return f"UIA{created.year}{created.month:02d}-{order_id % 1_000_000:06d}"


def _created(order_id: int, now: datetime) -> datetime:
    # Three years of orders, evenly, oldest first: ids and dates rise together, as in use.
    return now - timedelta(days=3 * 365) + timedelta(seconds=order_id * 7)


class Generator:
    """Writes orders `start+1 .. stop` (and their callbacks, e-mails, actions) straight in."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store = store
        self.now = now
        self.names = [(f"{f} {la}", normalise_name(f"{f} {la}")) for f in FIRST for la in LAST]
        weights = [share for _, _, share in STATES]
        self.pick = lambda rng: rng.choices(STATES, weights)[0]

    def grow(self, start: int, stop: int) -> None:
        for low in range(start, stop, CHUNK):
            self._chunk(low, min(stop, low + CHUNK))
        self._finish(stop)

    def _chunk(self, low: int, high: int) -> None:
        rng = random.Random(low)  # made-up data, not security
        orders, callbacks, emails, actions = [], [], [], []
        sqlite = self.store.is_sqlite
        for order_id in range(low + 1, high + 1):
            created = _created(order_id, self.now)
            state, step, _ = self.pick(rng)
            name, folded = self.names[rng.randrange(len(self.names))]
            done = state == "done"
            old = created < self.now - timedelta(days=90)
            ref = _ref(order_id, created)
            orders.append((
                order_id, ref, state, step, created, created + timedelta(minutes=3), created, 1,
                0, None, None,
                str(100_000 + order_id), name, folded, 10_000 + order_id if done else None,
                done, False, False, created + timedelta(days=90) if done and old else None,
            ))  # fmt: skip
            body = json.dumps({"orderref": ref, "msg": "Project New Order"})
            callbacks.append((
                order_id, created, ref, "Project New Order", "Project Update", "queued",
                "203.0.113.7", None if done and old else body, order_id,
            ))  # fmt: skip
            if order_id % 4 == 0:
                emails.append((
                    order_id // 4, order_id, "success", f"success.{ref}", "{}", "sent", created,
                    created, 1, created + timedelta(minutes=4),
                ))  # fmt: skip
            if order_id % 25 == 0:
                key = hashlib.sha256(f"{order_id}|install".encode()).hexdigest()
                actions.append((
                    order_id // 25, order_id, key, "Project Install Scheduled", "Project Update",
                    "notify", "done", 1, 1, created, created, created,
                ))  # fmt: skip
        self._write("orders", ORDER_COLUMNS, orders, sqlite)
        self._write("callbacks", CALLBACK_COLUMNS, callbacks, sqlite)
        self._write("notifications", NOTIFICATION_COLUMNS, emails, sqlite)
        self._write("message_actions", ACTION_COLUMNS, actions, sqlite)

    def _write(
        self, table: str, columns: list[str], rows: list[tuple[Any, ...]], sqlite: bool
    ) -> None:
        if not rows:
            return
        connection = self.store.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if sqlite:
                marks = ", ".join("?" * len(columns))
                text_rows = [tuple(_sqlite_value(v) for v in row) for row in rows]
                # The store's SQLite connections begin their own transactions: one here, or every
                # row would be a durable commit of its own.
                cursor.execute("BEGIN")
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                    text_rows,
                )
            else:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for row in rows:
                        copy.write_row(row)
            connection.commit()
        finally:
            connection.close()

    def _value(self, value: Any) -> Any:
        return _sqlite_value(value) if self.store.is_sqlite else value

    def _finish(self, stop: int) -> None:
        """The orders not finished (as many at every size, among the newest), a few routed
        messages and e-mails due, then what PostgreSQL needs after a bulk load: its sequences
        past the ids written, statistics and the visibility map."""
        connection = self.store.engine.raw_connection()
        try:
            cursor = connection.cursor()
            mark = "?" if self.store.is_sqlite else "%s"
            if self.store.is_sqlite:
                cursor.execute("BEGIN")
            # Those not finished at the last size are finished now; the newest get their turn.
            cursor.execute(
                "UPDATE orders SET state = 'done', step = 'finished', reason = NULL, "
                "retrying_since = NULL WHERE state IN ('received', 'in_progress', 'waiting')"
            )
            rng = random.Random(stop)  # made-up data, not security
            newest = range(max(0, stop - 3000) + 1, stop + 1)
            chosen = rng.sample(newest, min(len(newest), WAITING_NOW + RETRYING_NOW + DUE_NOW))
            sql = (
                f"UPDATE orders SET state = {mark}, step = {mark}, reason = {mark}, "
                f"next_attempt_at = {mark}, retrying_since = {mark} WHERE id = {mark}"
            )
            for number, order_id in enumerate(chosen):
                if number < DUE_NOW:
                    row = (
                        "received",
                        "lookup_contract",
                        None,
                        self.now - timedelta(minutes=1),
                        None,
                    )
                elif number < DUE_NOW + RETRYING_NOW:
                    later = self.now + timedelta(minutes=rng.randint(5, 600))
                    row = ("in_progress", "create_ticket", None, later, self.now)
                else:
                    row = ("waiting", "add_services", "waits for a person", self.now, None)
                cursor.execute(sql, (*(self._value(v) for v in row), order_id))
            due = self._value(self.now - timedelta(minutes=1))
            # A few routed messages' actions and e-mails due as well (those of the last size done).
            cursor.execute("UPDATE message_actions SET state = 'done' WHERE state = 'pending'")
            cursor.execute("UPDATE notifications SET state = 'sent' WHERE state = 'pending'")
            cursor.execute(
                f"UPDATE message_actions SET state = 'pending', next_attempt_at = {mark} "
                f"WHERE id IN (SELECT id FROM message_actions ORDER BY id DESC LIMIT 3)",
                (due,),
            )
            cursor.execute(
                f"UPDATE notifications SET state = 'pending', next_attempt_at = {mark} "
                f"WHERE id IN (SELECT id FROM notifications ORDER BY id DESC LIMIT 3)",
                (due,),
            )
            if not self.store.is_sqlite:
                for table in ("orders", "callbacks", "notifications", "message_actions"):
                    cursor.execute(
                        f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"
                    )
            connection.commit()
            if not self.store.is_sqlite:
                # What autovacuum does soon after a large load: statistics (without them every
                # plan is a guess) and the visibility map (index-only scans). VACUUM needs
                # autocommit, set on the driver's own connection.
                driver: Any = connection.dbapi_connection
                driver.autocommit = True
                try:
                    for table in ("orders", "callbacks", "notifications", "message_actions"):
                        driver.execute(f"VACUUM (ANALYZE) {table}")
                finally:
                    driver.autocommit = False  # the connection goes back to the pool
        finally:
            connection.close()


def _sqlite_value(value: Any) -> Any:
    # The text form SQLAlchemy stores SQLite datetimes in, so the product reads them back.
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


# Measuring ---------------------------------------------------------------------------------------


def median_ms(run: Callable[[], float], repeats: int) -> float:
    run()  # warm: the first of each is paid once, by someone
    return statistics.median(run() for _ in range(repeats)) * 1000


def timed(request: Callable[[], httpx.Response]) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        answer = request()
        elapsed = time.perf_counter() - started
        if answer.status_code >= 400:
            raise RuntimeError(f"{answer.request.url.path}: {answer.status_code}")
        return elapsed

    return run


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_client(base: str, user: str) -> httpx.Client:
    """An HTTP client logged in to the console, as a person's browser is."""
    client = httpx.Client(base_url=base, timeout=60)
    token = _CSRF.search(client.get("/login").text)
    assert token is not None, "no login form"
    answer = client.post(
        "/login", data={"username": user, "password": PASSWORD, "csrf_token": token.group(1)}
    )
    if answer.status_code != 303:
        raise RuntimeError(f"the bench user could not log in ({answer.status_code})")
    return client


def search(client: httpx.Client, text: str) -> Callable[[], httpx.Response]:
    """A search as the console does it: posted once (kept in the session), then the list."""
    token = _CSRF.search(client.get("/orders").text)
    assert token is not None
    client.post("/orders/search", data={"q": text, "csrf_token": token.group(1)})
    return lambda: client.get("/orders", params={"search": "1"})


def claim(store: Store, what: str, now: datetime) -> Callable[[], float]:
    """One claim of due work, rolled back so that every run finds the same rows due."""
    claims = {
        "orders": queries.claim_due_orders,
        "message_actions": queries.claim_due_message_actions,
        "notifications": queries.claim_due_notifications,
    }

    def run() -> float:
        with Session(store.engine) as session:
            started = time.perf_counter()
            claimed = claims[what](session, "bench", CLAIM_LIMIT, now, timedelta(minutes=5))
            elapsed = time.perf_counter() - started
            session.rollback()
        if not claimed:
            raise RuntimeError(f"the claim of {what} found nothing due")
        return elapsed

    return run


def measure_size(
    store: Store,
    base: str,
    client: httpx.Client,
    token: str,
    size: int,
    repeats: int,
    generated_at: datetime,
) -> dict[str, float]:
    """Every operation at the present size: median milliseconds."""
    now = utcnow()
    middle = size // 2
    middle_ref = _ref(middle, _created(middle, generated_at))
    sequence = iter(range(10**9))
    # Refs of a year no generated order has: 9xxxxx.
    prefix = f"9{secrets.randbelow(10**5):05d}"
    sender = httpx.Client()

    def callback() -> httpx.Response:
        number = next(sequence)
        body = json.dumps(
            {"event": "Project Update", "orderref": f"UIA{prefix}-{number:06d}",
             "msg": "Project New Order"}
        )  # fmt: skip
        return sender.post(
            f"{base}/api-callback",
            content=body,
            headers={"X-Callback-Token": token, "Content-Type": "application/json"},
        )

    operations = [
        Operation("claim due orders", claim(store, "orders", now)),
        Operation("claim due routed messages", claim(store, "message_actions", now)),
        Operation("claim due e-mails", claim(store, "notifications", now)),
        Operation("callback (new order stored)", timed(callback)),
        Operation("console: orders, first page", timed(lambda: client.get("/orders"))),
        Operation(
            "console: orders, a page half-way back",
            # The address the list's "Older" links lead to, half-way back in time.
            timed(lambda: client.get("/orders", params={"before": str(middle + 1)})),
        ),
        Operation(
            "console: orders waiting for a person",
            timed(lambda: client.get("/orders", params={"state": "waiting"})),
        ),
        Operation(
            "console: orders done", timed(lambda: client.get("/orders", params={"state": "done"}))
        ),
        Operation("console: home", timed(lambda: client.get("/"))),
        Operation("console: counts (JSON)", timed(lambda: client.get("/orders/counts"))),
        Operation("/metrics (for comparison: exact counts)", timed(lambda: client.get("/metrics"))),
    ]
    # The sender's connection is kept open between callbacks, as the console's is: a new client
    # per request would time building its TLS context (about 15 ms), not the service.
    with sender:
        figures = {op.name: median_ms(op.measure, repeats) for op in operations}
    for label, text in (
        ("console: search, exact order ref", middle_ref),
        ("console: search, a name's beginning", "dale wh"),
        ("console: search, another word of a name", "whitfield"),
        ("console: search, part of an order ref", middle_ref[-5:]),
    ):
        figures[label] = median_ms(timed(search(client, text)), repeats)
    return figures


@dataclass
class GrowthResult:
    sizes: tuple[int, ...]
    figures: dict[int, dict[str, float]]
    load_seconds: dict[int, float]


def run_growth(
    store: Store, base: str, token: str, user: str, sizes: tuple[int, ...], repeats: int
) -> GrowthResult:
    """Grow the database through `sizes`, measuring every operation at each."""
    generator = Generator(store, utcnow())
    figures: dict[int, dict[str, float]] = {}
    loads: dict[int, float] = {}
    stored = 0
    client = console_client(base, user)
    try:
        for size in sizes:
            started = time.perf_counter()
            generator.grow(stored, size)
            loads[size] = time.perf_counter() - started
            stored = size
            figures[size] = measure_size(store, base, client, token, size, repeats, generator.now)
            # The callbacks measured added orders: ids go on from the highest.
            stored = _highest_order_id(store)
    finally:
        client.close()
    return GrowthResult(sizes, figures, loads)


def _highest_order_id(store: Store) -> int:
    from sqlalchemy import func, select

    from utopia_handler.store.models import Order

    with store.read() as session:
        return int(session.scalar(select(func.max(Order.id))) or 0)


def size_label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1_000}k"


def rows(result: GrowthResult, kind: str) -> Iterator[dict[str, str]]:
    """One table row per operation: its median at each size and the largest over the smallest."""
    first, last = result.sizes[0], result.sizes[-1]
    for name in result.figures[first]:
        cells = {"database": kind, "operation": name}
        for size in result.sizes:
            cells[size_label(size)] = f"{result.figures[size][name]:.2f}"
        low, high = result.figures[first][name], result.figures[last][name]
        cells[f"{size_label(last)} / {size_label(first)}"] = f"{high / low:.2f}x" if low else "-"
        yield cells
    cells = {"database": kind, "operation": "(writing the orders in, s)"}
    for size in result.sizes:
        cells[size_label(size)] = f"{result.load_seconds[size]:.1f}"
    yield cells


HEADING = (
    "## How cost grows with the orders stored (median ms per operation)\n\n"
    "Orders written straight into the database at each size (three years of them, mostly done; "
    "at any size 40 waiting for a person, 30 retrying later and 12 due now; each with its "
    "callback, every fourth with an e-mail, every 25th with a routed message's action: "
    "bench/growth.py), then each "
    "operation timed, the median of several runs: the worker's claims in-process (rolled back "
    "each time), the callback and the console's pages through HTTP to the `web` service. "
    "Nothing here reads a whole table: the claims go through their (state, next_attempt_at) "
    "indexes; the list seeks on the order id (a page far back costs what the first does); the "
    'counts per state stop at 1000 ("1000+"); Home reads the queues and those counts; the '
    "search finds a whole ref, a name's beginning, a site id or a PowerCode number through "
    "indexes, and reads only the newest 20,000 orders for part of a ref or another word of a "
    "name, so those two grow up to 20k orders and then stay flat. `/metrics` still counts every "
    "row exactly, for comparison. The machine is shared: single figures of a few ms move by "
    "30 % or more from run to run."
)
