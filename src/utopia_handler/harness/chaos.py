"""`utopia-handler chaos`: many orders under faults and SIGKILLs, then a count of what went wrong.

The run, all on loopback:
- the PowerCode, UTOPIA and SMTP stand-ins run in this process (real servers);
- `utopia-handler serve` runs as a child process on SQLite in a temporary folder (or the
  `--database-url` given, which must be empty);
- N generated orders are added to the UTOPIA stand-in and their callbacks sent one to three
  times each, some copies at the same moment; a delivery without a 2xx answer is sent again, as
  UTOPIA would;
- meanwhile faults are injected at random through the stand-ins' fault plans (every kind), the
  database is locked now and then, and the service is SIGKILLed at random moments and restarted;
- at the end faults stop, the service is left to finish, and the stand-ins' records and the
  database are checked: nothing acknowledged may be lost, no customer or service made twice.

`hold_database_lock` is also the tool for showing, by hand, what a locked database does.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import random
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from utopia_handler.emulators import Emulators, start_emulators
from utopia_handler.emulators.faults import FaultPlan
from utopia_handler.emulators.seed import make_order
from utopia_handler.notify.messages import MESSAGE_ID_DOMAIN
from utopia_handler.store import queries
from utopia_handler.store.db import Store
from utopia_handler.store.db import database_url as sqlalchemy_url
from utopia_handler.store.models import (
    ACTIVE_STATES,
    Callback,
    Notification,
    NotificationKind,
    NotificationState,
    Order,
    OrderState,
)

Echo = Callable[[str], None]

# Timeouts the child uses towards the stand-ins; a "timeout" fault holds a call longer than this.
_READ_TIMEOUT = 1.5
_POWERCODE_READS = ("searchCustomers", "readCustomer", "readCustomerService", "uapi:tags:GET")
_POWERCODE_WRITES = ("createCustomer", "addCustomerService", "createTicket", "uapi:tags:POST")
_UTOPIA_CALLS = ("contractlookup", "contractdownload")
# All a `serve` child inherits: enough to find programs and this very code, no settings.
_CHILD_ENV_KEYS = ("PATH", "HOME", "LANG", "SYSTEMROOT", "PYTHONPATH")


@dataclass(frozen=True)
class ChaosOptions:
    """What to run: how many orders and kills, the random seed and a time cap."""

    orders: int = 500
    kills: int = 20
    seed: int = 1
    duration: float = 900.0  # seconds; the whole run stops (and reports) by then
    database_url: str | None = None
    workdir: Path | None = None  # kept when given; a temporary folder otherwise
    # Mean seconds between kills; orders are released over about kills x this.
    kill_interval: float = 3.0


@dataclass
class ChaosReport:
    """What the run did and what it found."""

    options: ChaosOptions
    elapsed: float = 0.0
    settled: bool = False
    kills: int = 0
    deliveries: int = 0
    deliveries_acknowledged: int = 0
    tries: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    faults_unfired: int = 0
    db_locks: int = 0
    orders_acknowledged: int = 0
    callbacks_stored: int = 0
    finished: int = 0
    ended_otherwise: Counter[str] = field(default_factory=Counter)
    waiting: Counter[str] = field(default_factory=Counter)
    ticket_holds: int = 0
    ticket_holds_with_ticket: int = 0
    lost: dict[str, str] = field(default_factory=dict)
    never_acknowledged: list[str] = field(default_factory=list)
    customers_twice: int = 0
    services_twice: int = 0
    tickets_twice: int = 0
    emails_twice: int = 0
    emails_sent: int = 0
    internal_errors_logged: int = 0
    log_files: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        """The promises: nothing lost, no customer or service made twice, and the run settled."""
        return (
            self.settled
            and not self.lost
            and self.customers_twice == 0
            and self.services_twice == 0
        )

    def lines(self) -> list[str]:
        """The report as printed by `utopia-handler chaos`."""
        o = self.options
        answers = ", ".join(f"{name} x{count}" for name, count in sorted(self.answers.items()))
        faults = ", ".join(f"{name} x{count}" for name, count in sorted(self.faults.items()))
        lines = [
            f"chaos run: {o.orders} orders, {self.kills} SIGKILLs, seed {o.seed}, "
            f"{self.elapsed:.0f} s{'' if self.settled else ' (NOT settled: time cap reached)'}",
            f"faults injected: {sum(self.faults.values())} ({self.faults_unfired} never fired), "
            f"database locks: {self.db_locks}",
            f"  {faults}",
            f"callbacks acknowledged: {self.deliveries_acknowledged} of {self.deliveries} "
            f"deliveries, {self.orders_acknowledged} orders; {self.tries} tries ({answers})",
            f"callbacks stored: {self.callbacks_stored} ("
            f"{self.callbacks_stored - self.deliveries_acknowledged} stored whose answer was lost "
            "on the way; their resend was stored as a repeat)",
            f"orders finished: {self.finished}",
        ]
        for state, count in sorted(self.ended_otherwise.items()):
            lines.append(f"orders ended as {state}: {count}")
        lines.append(f"orders waiting for a person: {sum(self.waiting.values())}")
        for reason, count in self.waiting.most_common():
            lines.append(f"  {count:5d}  {reason}")
        if self.ticket_holds:
            lines.append(
                f"  (ticket holds: {self.ticket_holds}, of which a ticket really existed: "
                f"{self.ticket_holds_with_ticket})"
            )
        lines += [
            f"orders lost: {len(self.lost)}",
            *(f"  {ref}: {why}" for ref, why in sorted(self.lost.items())),
            f"orders never acknowledged (sender gave up at the time cap): "
            f"{len(self.never_acknowledged)}",
            f"customers created twice: {self.customers_twice}",
            f"services added twice: {self.services_twice}",
            f"tickets created twice: {self.tickets_twice}",
            f"e-mails sent twice (same Message-ID): {self.emails_twice} of {self.emails_sent}",
            f"internal errors in the service log: {self.internal_errors_logged}",
            "RESULT: " + ("PASS" if self.ok else "FAIL"),
        ]
        return lines


# -- the database lock tool ------------------------------------------------------------------------


def hold_database_lock(database_url: str, seconds: float) -> None:
    """Hold the database's write lock for `seconds` from a connection of our own.

    Stands for a backup, a person in `sqlite3` with an open transaction, or a stuck migration.
    On SQLite readers go on (WAL) but every writer waits; on PostgreSQL the service's tables are
    locked against everyone.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database:
            raise ValueError("a SQLite URL with a file is needed")
        raw = sqlite3.connect(url.database, timeout=30, isolation_level=None)
        try:
            raw.execute("BEGIN EXCLUSIVE")
            time.sleep(seconds)
            raw.execute("ROLLBACK")
        finally:
            raw.close()
        return
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.begin() as connection:
            connection.execute(text("LOCK TABLE callbacks, orders IN ACCESS EXCLUSIVE MODE"))
            time.sleep(seconds)
    finally:
        engine.dispose()


# -- the service as a child process ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """`utopia-handler serve` as a child process that can be killed and started again."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{env['FLASK_PORT']}"
        self.output = workdir / "serve.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start it and wait until /healthz answers."""
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "utopia_handler", "serve"],
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"serve exited with {self.process.returncode}; see {self.output}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"serve did not become healthy in {timeout:g} s; see {self.output}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or released."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()


def service_environment(
    emulators: Emulators, workdir: Path, database_url: str | None, token: str
) -> dict[str, str]:
    """The child's settings: the stand-ins, short leases and retries, quick timeouts."""
    keep = {k: v for k, v in os.environ.items() if k in _CHILD_ENV_KEYS}
    env = {
        **keep,
        **emulators.env(),
        "DATA_DIR": str(workdir / "data"),
        "LOG_FILE": str(workdir / "service.log"),
        "FLASK_PORT": str(_free_port()),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "UTOPIA_CALLBACK_TOKEN": token,
        "EMAIL_SENDER": "utopia-handler@isp.example",
        "EMAIL_RECIPIENTS": "provisioning@isp.example",
        "TICKET_TEMPLATE_DIR": str(workdir / "ticket_descriptions"),
        # A killed worker's orders are taken up again 2 s later.
        "LEASE_SECONDS": "2",
        "POLL_SECONDS": "0.1",
        "RETRY_BASE_SECONDS": "0.2",
        "RETRY_MAX_SECONDS": "2",
        "UTOPIA_CONNECT_TIMEOUT": "1",
        "UTOPIA_READ_TIMEOUT": str(_READ_TIMEOUT),
        "PC_CONNECT_TIMEOUT": "1",
        "PC_READ_TIMEOUT": str(_READ_TIMEOUT),
        "MAIL_TIMEOUT": str(_READ_TIMEOUT),
        # A callback waits 1 s for a locked database, then answers 503 and UTOPIA retries.
        "CALLBACK_STORE_WAIT_SECONDS": "1",
        "CALLBACK_RATE_LIMIT": "20",
        "CALLBACK_RATE_BURST": "40",
        # The count is of what the callback path loses or doubles; reconciliation would make up
        # for a lost callback and hide it (tests/test_reconcile.py holds reconciliation to that).
        "RECONCILE_ENABLED": "false",
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


# -- the sender (UTOPIA) --------------------------------------------------------------------------


class CallbackSender:
    """Delivers callbacks like UTOPIA would: each copy is sent until a 2xx answer comes back."""

    def __init__(self, url: str, token: str, rng: random.Random, deadline: float) -> None:
        self.url = url
        self.token = token
        self.deadline = deadline
        self.stop = threading.Event()
        self.acknowledged: Counter[str] = Counter()  # order ref -> acknowledged copies
        self.answers: Counter[str] = Counter()
        self.tries = 0
        self._seed = rng.random()
        self._lock = threading.Lock()
        self._client = httpx.Client(
            timeout=5.0, limits=httpx.Limits(max_connections=32, max_keepalive_connections=16)
        )
        self._pool = ThreadPoolExecutor(24, thread_name_prefix="utopia")
        self._schedule: list[tuple[float, int, str]] = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._scheduler = threading.Thread(target=self._run_schedule, daemon=True)
        self._scheduler.start()
        self.planned = 0

    def plan(self, order_ref: str, when: float) -> None:
        """Send one copy of the order's callback at `when` (time.monotonic())."""
        with self._wake:
            heapq.heappush(self._schedule, (when, next(self._counter), order_ref))
            self.planned += 1
            self._wake.notify()

    def _run_schedule(self) -> None:
        while not self.stop.is_set():
            with self._wake:
                now = time.monotonic()
                while self._schedule and self._schedule[0][0] <= now:
                    _, _, ref = heapq.heappop(self._schedule)
                    self._pool.submit(self._deliver, ref)
                wait = self._schedule[0][0] - now if self._schedule else 0.5
                self._wake.wait(min(max(wait, 0.0), 0.5))

    def _deliver(self, order_ref: str) -> None:
        body = {"event": "Project Update", "orderref": order_ref, "msg": "Project New Order"}
        rng = random.Random(f"{self._seed}:{order_ref}:{threading.get_ident()}")
        attempt = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            attempt += 1
            retry_after: float | None = None
            try:
                answer = self._client.post(
                    f"{self.url}/api-callback",
                    json=body,
                    headers={"X-Callback-Token": self.token},
                )
                outcome = str(answer.status_code)
                if answer.is_success:
                    with self._lock:
                        self.tries += 1
                        self.answers[outcome] += 1
                        self.acknowledged[order_ref] += 1
                    return
                with contextlib.suppress(ValueError):
                    retry_after = float(answer.headers.get("Retry-After", ""))
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            with self._lock:
                self.tries += 1
                self.answers[outcome] += 1
            # UTOPIA's real schedule is unknown; this one presses harder than Retry-After asks.
            backoff = min(2.0, 0.1 * 2**attempt) * rng.uniform(0.5, 1.0)
            if retry_after is not None:
                backoff = min(max(backoff, retry_after), 2.0)
            self.stop.wait(backoff)

    def idle(self) -> bool:
        """True when every planned copy has been acknowledged."""
        with self._lock:
            return sum(self.acknowledged.values()) >= self.planned

    def close(self) -> None:
        self.stop.set()
        with self._wake:
            self._wake.notify()
        self._scheduler.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


# -- faults --------------------------------------------------------------------------------------


# A "timeout" fault holds a call longer than the child waits for it.
_SLOW = _READ_TIMEOUT + 0.5
Inject = Callable[[random.Random], bool]  # False: nothing injected this time


def _latency(plan: FaultPlan, calls: tuple[str, ...]) -> Inject:
    def inject(rng: random.Random) -> bool:
        seconds, count = rng.uniform(0.2, 1.2), rng.randint(1, 3)
        plan.add(rng.choice(calls), "latency", seconds=seconds, count=count)
        return True

    return inject


def _burst(plan: FaultPlan, calls: tuple[str, ...]) -> Inject:
    def inject(rng: random.Random) -> bool:
        status, count = rng.choice((500, 502, 503, 504)), rng.randint(1, 5)
        plan.add(rng.choice(calls), "fail", status=status, count=count)
        return True

    return inject


def _throttle(plan: FaultPlan, calls: tuple[str, ...]) -> Inject:
    def inject(rng: random.Random) -> bool:
        retry_after, count = round(rng.uniform(0.2, 1.5), 1), rng.randint(1, 3)
        plan.add(rng.choice(calls), "fail", status=429, retry_after=retry_after, count=count)
        return True

    return inject


def _one(plan: FaultPlan, calls: tuple[str, ...], kind: str, seconds: float = 0.0) -> Inject:
    def inject(rng: random.Random) -> bool:
        plan.add(rng.choice(calls), kind, seconds=seconds)
        return True

    return inject


def _outage(plan: FaultPlan, target: str) -> Inject:
    def inject(rng: random.Random) -> bool:
        plan.add(target, "outage", seconds=rng.uniform(1.0, 4.0))
        return True

    return inject


def _reject(plan: FaultPlan) -> Inject:
    def inject(rng: random.Random) -> bool:
        plan.add(rng.choice(_POWERCODE_WRITES), "reject", status_code=99, message="Chaos says no")
        return True

    return inject


@dataclass(frozen=True)
class _FaultChoice:
    label: str
    weight: float
    inject: Inject


class FaultInjector:
    """Adds random faults to the stand-ins' plans, and locks the database now and then."""

    def __init__(self, emulators: Emulators, database_url: str, rng: random.Random) -> None:
        self.emulators = emulators
        self.database_url = database_url
        self.rng = rng
        self.injected: Counter[str] = Counter()
        self.db_locks = 0
        self.stop = threading.Event()
        self._lock_thread: threading.Thread | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-faults", daemon=True)
        self.choices = self._menu()

    def _menu(self) -> list[_FaultChoice]:
        pc, ut, mail = self.emulators.powercode, self.emulators.utopia, self.emulators.smtp
        menu: list[_FaultChoice] = []
        for service, plan, calls in (
            ("powercode", pc.faults, _POWERCODE_READS + _POWERCODE_WRITES),
            ("utopia", ut.faults, _UTOPIA_CALLS),
        ):
            menu += [
                _FaultChoice(f"{service}:latency", 2, _latency(plan, calls)),
                _FaultChoice(f"{service}:5xx burst", 3, _burst(plan, calls)),
                _FaultChoice(f"{service}:429", 2, _throttle(plan, calls)),
                _FaultChoice(f"{service}:timeout", 1, _one(plan, calls, "timeout", _SLOW)),
                _FaultChoice(f"{service}:drop_before", 2, _one(plan, calls, "drop_before")),
                _FaultChoice(f"{service}:outage", 1, _outage(plan, "*")),
            ]
        # Applied, reply lost: the case exactly-once is about; each writing call gets its own.
        menu += [
            _FaultChoice(
                f"powercode:drop_after_apply {action}",
                2,
                _one(pc.faults, (action,), "drop_after_apply"),
            )
            for action in _POWERCODE_WRITES
        ]
        menu += [
            _FaultChoice(
                "utopia:drop_after_apply", 1, _one(ut.faults, _UTOPIA_CALLS, "drop_after_apply")
            ),
            _FaultChoice("powercode:reject", 0.3, _reject(pc.faults)),
            _FaultChoice("smtp:fail", 1, _one(mail.faults, ("DATA",), "fail")),
            _FaultChoice("smtp:drop_before", 1, _one(mail.faults, ("DATA",), "drop_before")),
            # The relay takes the message, then hangs up before its final "250".
            _FaultChoice(
                "smtp:accept_then_close", 1.5, _one(mail.faults, ("DATA",), "drop_after_apply")
            ),
            _FaultChoice("smtp:latency", 0.5, _latency(mail.faults, ("DATA",))),
            _FaultChoice("smtp:timeout", 0.5, _one(mail.faults, ("DATA",), "timeout", _SLOW)),
            _FaultChoice("smtp:refuse_for_a_while", 1, _outage(mail.faults, "CONNECT")),
            _FaultChoice("database:lock", 1.5, self._lock_database),
        ]
        return menu

    def _lock_database(self, rng: random.Random) -> bool:
        if self._lock_thread is not None and self._lock_thread.is_alive():
            return False  # one lock at a time
        seconds = rng.uniform(0.5, 3.0)
        self.db_locks += 1
        self._lock_thread = threading.Thread(
            target=hold_database_lock, args=(self.database_url, seconds), daemon=True
        )
        self._lock_thread.start()
        return True

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # Every kind once first, in random order, so even a short run meets them all.
        first = list(self.choices)
        self.rng.shuffle(first)
        weights = [choice.weight for choice in self.choices]
        while not self.stop.wait(self.rng.uniform(0.15, 0.6)):
            choice = first.pop() if first else self.rng.choices(self.choices, weights)[0]
            if choice.inject(self.rng):
                self.injected[choice.label] += 1

    def finish(self) -> int:
        """Stop injecting, end any lock, clear what is queued; returns how many never fired."""
        self.stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(5)
        if self._lock_thread is not None:
            self._lock_thread.join(10)
        unfired = 0
        for plan in (
            self.emulators.powercode.faults,
            self.emulators.utopia.faults,
            self.emulators.smtp.faults,
        ):
            unfired += sum(1 for fault in plan.pending() if fault["until"] is None)
            plan.clear()
        return unfired


# -- the run -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="utopia-handler-chaos-") as folder:
        yield Path(folder)


def run_chaos(options: ChaosOptions, echo: Echo = print) -> ChaosReport:
    """Run the chaos test described by `options` and return what it found."""
    if options.orders < 1 or options.kills < 0:
        raise ValueError("orders must be at least 1 and kills at least 0")
    started = time.monotonic()
    deadline = started + options.duration
    rng = random.Random(options.seed)
    report = ChaosReport(options=options)
    with _workdir(options.workdir) as workdir, start_emulators(seed=False) as emulators:
        token = secrets.token_urlsafe(24)
        env = service_environment(emulators, workdir, options.database_url, token)
        database_url = options.database_url or f"sqlite:///{workdir / 'data' / 'utopia-handler.db'}"
        orders = [make_order(index, rng) for index in range(options.orders)]
        for order_ref, contract in orders:
            emulators.utopia.add_order(order_ref, contract)
        service = ServiceProcess(env, workdir)
        sender = CallbackSender(service.url, token, rng, deadline)
        injector = FaultInjector(emulators, database_url, random.Random(rng.random()))
        # The orders go out in one batch per stretch between kills, so work and kills overlap
        # however long a restart takes on this machine.
        refs = [ref for ref, _ in orders]
        batches = [refs[i :: options.kills + 1] for i in range(options.kills + 1)]
        try:
            service.start()
            _require_empty(database_url)
            _plan_deliveries(sender, batches.pop(0), options.kill_interval, rng)
            injector.start()
            for number in range(1, options.kills + 1):
                wait = rng.uniform(0.3, 1.7) * options.kill_interval
                if time.monotonic() + wait >= deadline:
                    break
                time.sleep(wait)
                service.kill()
                report.kills += 1
                echo(f"kill {number}/{options.kills} at {time.monotonic() - started:.0f} s")
                service.start()
                _plan_deliveries(sender, batches.pop(0), options.kill_interval, rng)
            for batch in batches:  # the time cap cut the kills short: send the rest now
                _plan_deliveries(sender, batch, options.kill_interval, rng)
            # Everything sent and acknowledged (or the cap), then no more faults.
            while not sender.idle() and time.monotonic() < deadline:
                time.sleep(0.2)
            report.faults_unfired = injector.finish()
            if not service.alive():
                service.start()
            report.settled = _wait_until_settled(database_url, deadline)
            echo(f"settled: {report.settled} at {time.monotonic() - started:.0f} s")
        finally:
            sender.close()
            injector.finish()
            service.stop()
        report.faults = injector.injected
        report.db_locks = injector.db_locks
        report.deliveries = sender.planned
        report.deliveries_acknowledged = sum(sender.acknowledged.values())
        report.tries = sender.tries
        report.answers = sender.answers
        _check(report, database_url, emulators, set(sender.acknowledged), [r for r, _ in orders])
        report.internal_errors_logged = _count_internal_errors(workdir)
        report.log_files = tuple(p for p in (workdir / "service.log", service.output) if p.exists())
        report.elapsed = time.monotonic() - started
        if options.workdir is None:
            # The folder goes away; keep nothing that points into it.
            report.log_files = ()
    return report


def _require_empty(database_url: str) -> None:
    store = Store(database_url)
    try:
        with store.read() as session:
            if session.scalar(select(func.count()).select_from(Order)):
                raise RuntimeError("the chaos run needs an empty database; this one has orders")
    finally:
        store.close()


def _plan_deliveries(
    sender: CallbackSender, refs: list[str], window: float, rng: random.Random
) -> None:
    """Spread the orders' callbacks over the next `window` seconds; one to three copies each."""
    now = time.monotonic()
    for index, ref in enumerate(refs):
        when = now + window * index / max(1, len(refs))
        sender.plan(ref, when)
        for _ in range(rng.randint(0, 2)):
            # Half the repeats arrive at the same moment, half a little later.
            sender.plan(ref, when if rng.random() < 0.5 else when + rng.uniform(0.2, 8.0))


def _wait_until_settled(database_url: str, deadline: float) -> bool:
    """Wait until no order is active and no e-mail is pending (or the deadline)."""
    store = Store(database_url)
    try:
        while time.monotonic() < deadline:
            with store.read() as session:
                if queries.all_work_finished(session):
                    return True
            time.sleep(0.3)
        return False
    finally:
        store.close()


def _reason_group(reason: str | None) -> str:
    """A waiting reason without its numbers, so alike reasons count together."""
    text_ = re.sub(r"\d+", "N", reason or "(no reason)")
    return text_ if len(text_) <= 110 else text_[:107] + "..."


def _check(
    report: ChaosReport,
    database_url: str,
    emulators: Emulators,
    acknowledged: set[str],
    refs: list[str],
) -> None:
    """Compare what was acknowledged with the database and the stand-ins' records."""
    pc, mail = emulators.powercode, emulators.smtp
    with pc.lock:
        customers = json.loads(json.dumps(list(pc.customers.values())))
        service_adds = list(pc.service_adds)
        tickets = list(pc.tickets.values())
        customer_services = {k: dict(v) for k, v in pc.customer_services.items()}
        customer_tags = {k: set(v) for k, v in pc.customer_tags.items()}
    with mail.lock:
        message_ids = [str(message["Message-ID"]) for message in mail.messages]
    by_site: dict[str, list[int]] = {}
    for record in customers:
        by_site.setdefault(str(record.get("extAccountID", "")), []).append(
            int(record["customerID"])
        )
    tickets_by_customer = Counter(int(ticket["customerID"]) for ticket in tickets)
    sent_ids = Counter(message_ids)

    report.customers_twice = sum(
        len(ids) - 1 for site, ids in by_site.items() if site and len(ids) > 1
    )
    report.services_twice = sum(count - 1 for count in Counter(service_adds).values() if count > 1)
    report.tickets_twice = sum(count - 1 for count in tickets_by_customer.values() if count > 1)
    report.emails_twice = sum(count - 1 for count in sent_ids.values() if count > 1)
    report.emails_sent = len(message_ids)
    report.orders_acknowledged = len(acknowledged)
    report.never_acknowledged = sorted(set(refs) - acknowledged)

    store = Store(database_url)
    try:
        with store.read() as session:
            rows = {order.order_ref: order for order in session.scalars(select(Order))}
            report.callbacks_stored = (
                session.scalar(select(func.count()).select_from(Callback)) or 0
            )
            notes = list(session.scalars(select(Notification)))
    finally:
        store.close()
    success_ids = {
        note.order_id: note.message_id
        for note in notes
        if note.order_id is not None
        and note.kind == NotificationKind.SUCCESS
        and note.state == NotificationState.SENT
    }
    for ref in sorted(acknowledged):
        order = rows.get(ref)
        if order is None:
            report.lost[ref] = "acknowledged but not in the database"
            continue
        if order.state in ACTIVE_STATES:
            report.lost[ref] = f"still {order.state.value} at step {order.step.value}"
            continue
        if order.state == OrderState.WAITING:
            report.waiting[_reason_group(order.reason)] += 1
            if order.reason and order.reason.startswith("create_ticket: an earlier ticket"):
                report.ticket_holds += 1
                if order.customer_id is not None and tickets_by_customer[order.customer_id]:
                    report.ticket_holds_with_ticket += 1
            continue
        if order.state != OrderState.DONE:
            report.ended_otherwise[order.state.value] += 1
            continue
        problem = _done_problem(
            order,
            by_site,
            customer_services,
            tickets_by_customer,
            customer_tags,
            success_ids,
            sent_ids,
        )
        if problem:
            report.lost[ref] = f"done, but {problem}"
        else:
            report.finished += 1


def _done_problem(
    order: Order,
    by_site: dict[str, list[int]],
    customer_services: dict[int, dict[int, int]],
    tickets_by_customer: Counter[int],
    customer_tags: dict[int, set[int]],
    success_ids: dict[int, str],
    sent_ids: Counter[str],
) -> str | None:
    """What a finished order lacks in PowerCode or the mailbox, or None."""
    customer_id = order.customer_id
    if customer_id is None or customer_id not in by_site.get(order.site_id or "", []):
        return "its customer is not in PowerCode under its site id"
    wanted = {int(plan["service_id"]) for plan in order.plans or ()}
    if not wanted <= set(customer_services.get(customer_id, {})):
        return "a service is missing"
    if not tickets_by_customer[customer_id]:
        return "its ticket is missing"
    if not set(order.tags_added or ()) <= customer_tags.get(customer_id, set()):
        return "a tag is missing"
    message_id = success_ids.get(order.id)
    if message_id is None or sent_ids[f"<{message_id}@{MESSAGE_ID_DOMAIN}>"] == 0:
        return "its e-mail was never received"
    return None


def _count_internal_errors(workdir: Path) -> int:
    log_file = workdir / "service.log"
    if not log_file.exists():
        return 0
    with log_file.open(encoding="utf-8", errors="replace") as lines:
        return sum(1 for line in lines if " step.crashed " in line or " mail.crashed " in line)
