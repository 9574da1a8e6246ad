"""For machines: `GET /readyz` (store answers, schema at the newest migration) and `GET /metrics`
(Prometheus text format).

Metrics are computed from the database at scrape time, so every process (web, worker, several
of each) reports the same truth and nothing is lost at a restart. `/metrics` needs
`Authorization: Bearer <METRICS_TOKEN>` when that setting is set; without it, only direct
loopback requests (no proxy headers) may scrape.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Float, case, cast, extract, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from utopia_handler.runtime import Runtime
from utopia_handler.store import queries
from utopia_handler.store.db import Store, migration_status
from utopia_handler.store.models import (
    ACTIVE_STATES,
    AttemptOutcome,
    Callback,
    CallbackOutcome,
    Notification,
    NotificationState,
    Order,
    OrderState,
    ReconcileOutcome,
    ReconcileRun,
    Step,
    StepAttempt,
)
from utopia_handler.timeutil import utcnow
from utopia_handler.web.security import CAME_THROUGH_PROXY, SOCKET_PEER, is_local, parse_address

bp = Blueprint("metrics", __name__)

# Callbacks by `msg`: the most frequent texts by name, every other as "other", so a sender that
# makes up texts cannot grow the series without bound. Texts are UTOPIA's words, never a
# customer's; clipped all the same.
MESSAGE_LABELS = 50
MESSAGE_LABEL_CHARS = 100
OTHER_MESSAGES = "other"
# Seconds; a step is one or two outside calls, so most land well under 10 s.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


@dataclass
class Snapshot:
    """The numbers the console home and /metrics show, read in one transaction."""

    callbacks: dict[CallbackOutcome, int] = field(default_factory=dict)
    orders: dict[OrderState, int] = field(default_factory=dict)
    attempts: dict[tuple[Step, AttemptOutcome], int] = field(default_factory=dict)
    emails: dict[NotificationState, int] = field(default_factory=dict)
    orders_due: int = 0
    orders_scheduled: int = 0
    oldest_waiting_since: datetime | None = None

    @property
    def waiting(self) -> int:
        return self.orders.get(OrderState.WAITING, 0)

    def oldest_waiting_age(self, now: datetime) -> float:
        """Seconds since the oldest order waiting for a person was received (0 when none)."""
        if self.oldest_waiting_since is None:
            return 0.0
        return max(0.0, (now - self.oldest_waiting_since).total_seconds())


def snapshot(session: Session, now: datetime) -> Snapshot:
    """Counts of callbacks, orders, attempts and e-mails, and the state of the queues."""
    shot = Snapshot()
    for outcome, count in session.execute(
        select(Callback.outcome, func.count()).group_by(Callback.outcome)
    ):
        shot.callbacks[CallbackOutcome(outcome)] = count
    for state, count in session.execute(select(Order.state, func.count()).group_by(Order.state)):
        shot.orders[OrderState(state)] = count
    for step, outcome, count in session.execute(
        select(StepAttempt.step, StepAttempt.outcome, func.count()).group_by(
            StepAttempt.step, StepAttempt.outcome
        )
    ):
        shot.attempts[(Step(step), AttemptOutcome(outcome))] = count
    for state, count in session.execute(
        select(Notification.state, func.count()).group_by(Notification.state)
    ):
        shot.emails[NotificationState(state)] = count
    active = Order.state.in_(ACTIVE_STATES)
    shot.orders_due = _count(session, active, Order.next_attempt_at <= now)
    shot.orders_scheduled = _count(session, active, Order.next_attempt_at > now)
    shot.oldest_waiting_since = session.scalar(
        select(func.min(Order.created_at)).where(Order.state == OrderState.WAITING)
    )
    return shot


def callbacks_by_message(session: Session) -> dict[str, int]:
    """Callbacks counted by `msg`: the MESSAGE_LABELS most frequent texts (clipped), the rest
    as "other"."""
    named, others = queries.callbacks_by_message(session, MESSAGE_LABELS)
    counts: dict[str, int] = {}
    for msg, count in named:
        label = " ".join(msg.split())[:MESSAGE_LABEL_CHARS]
        counts[label] = counts.get(label, 0) + count  # texts that differ only past the clip
    counts[OTHER_MESSAGES] = counts.get(OTHER_MESSAGES, 0) + others
    return counts


def _count(session: Session, *conditions: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(Order).where(*conditions)) or 0)


@dataclass
class ReconcileNumbers:
    """Reconciliation as /metrics tells it; dry runs are left out (they change nothing)."""

    runs: dict[ReconcileOutcome, int] = field(default_factory=dict)
    missed_found: int = 0  # orders found with no callback, after each network's baseline
    last_good: dict[str, datetime] = field(default_factory=dict)  # network label -> finished


def reconcile_numbers(session: Session) -> ReconcileNumbers:
    """Runs by outcome, missed orders found, and each network's last good run."""
    numbers = ReconcileNumbers()
    real = ReconcileRun.dry_run.is_(False)
    for outcome, count in session.execute(
        select(ReconcileRun.outcome, func.count()).where(real).group_by(ReconcileRun.outcome)
    ):
        numbers.runs[ReconcileOutcome(outcome)] = count
    numbers.missed_found = int(
        session.scalar(
            select(func.coalesce(func.sum(ReconcileRun.new_count), 0)).where(
                real,
                ReconcileRun.outcome == ReconcileOutcome.OK,
                ReconcileRun.baseline.is_(False),
            )
        )
        or 0
    )
    for network, finished in session.execute(
        select(ReconcileRun.network, func.max(ReconcileRun.finished_at))
        .where(real, ReconcileRun.outcome == ReconcileOutcome.OK)
        .group_by(ReconcileRun.network)
    ):
        numbers.last_good[network or "default"] = finished
    return numbers


@dataclass(frozen=True)
class StepDurations:
    step: Step
    count: int
    total_seconds: float
    buckets: tuple[int, ...]  # attempts at or under each DURATION_BUCKETS bound (cumulative)


def step_durations(session: Session) -> list[StepDurations]:
    """How long finished step attempts took, bucketed in SQL so history size does not matter."""
    if session.get_bind().dialect.name == "sqlite":
        seconds: ColumnElement[float] = (
            func.julianday(StepAttempt.finished_at) - func.julianday(StepAttempt.started_at)
        ) * 86400.0
    else:
        seconds = cast(extract("epoch", StepAttempt.finished_at - StepAttempt.started_at), Float)
    columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
    rows = session.execute(
        select(StepAttempt.step, func.count(), func.sum(seconds), *columns)
        .where(StepAttempt.finished_at.is_not(None))
        .group_by(StepAttempt.step)
    )
    return [
        StepDurations(
            step=Step(row[0]),
            count=int(row[1]),
            total_seconds=float(row[2] or 0.0),
            buckets=tuple(int(value or 0) for value in row[3:]),
        )
        for row in rows
    ]


class _StoreCollector(Collector):
    """Yields every metric from one database read."""

    def __init__(self, store: Store, now: datetime) -> None:
        self._store = store
        self._now = now

    def collect(self) -> Iterable[Metric]:
        with self._store.read() as session:
            shot = snapshot(session, self._now)
            durations = step_durations(session)
            reconciled = reconcile_numbers(session)
            by_message = callbacks_by_message(session)
        callbacks = CounterMetricFamily(
            "utopia_handler_callbacks", "Callbacks received, by outcome.", labels=["outcome"]
        )
        for callback_outcome in CallbackOutcome:
            callbacks.add_metric([callback_outcome.value], shot.callbacks.get(callback_outcome, 0))
        yield callbacks
        messages = CounterMetricFamily(
            "utopia_handler_callbacks_by_message",
            f"Callbacks received, by UTOPIA's msg text: the {MESSAGE_LABELS} most frequent, "
            f'every other as "{OTHER_MESSAGES}".',
            labels=["msg"],
        )
        for msg, count in by_message.items():
            messages.add_metric([msg], count)
        yield messages
        orders = GaugeMetricFamily("utopia_handler_orders", "Orders by state.", labels=["state"])
        for state in OrderState:
            orders.add_metric([state.value], shot.orders.get(state, 0))
        yield orders
        attempts = CounterMetricFamily(
            "utopia_handler_step_attempts",
            "Step attempts, by step and outcome.",
            labels=["step", "outcome"],
        )
        retries = CounterMetricFamily(
            "utopia_handler_step_retries",
            "Step attempts that failed outside and were retried (retry or uncertain), by step.",
            labels=["step"],
        )
        for step in Step:
            if step == Step.FINISHED:
                continue
            for outcome in AttemptOutcome:
                attempts.add_metric(
                    [step.value, outcome.value], shot.attempts.get((step, outcome), 0)
                )
            retried = shot.attempts.get((step, AttemptOutcome.RETRY), 0) + shot.attempts.get(
                (step, AttemptOutcome.UNCERTAIN), 0
            )
            retries.add_metric([step.value], retried)
        yield attempts
        yield retries
        histogram = HistogramMetricFamily(
            "utopia_handler_step_duration_seconds",
            "How long finished step attempts took, outside calls included.",
            labels=["step"],
        )
        for row in durations:
            buckets = [
                (_bound(bound), float(count))
                for bound, count in zip(DURATION_BUCKETS, row.buckets, strict=True)
            ]
            buckets.append(("+Inf", float(row.count)))
            histogram.add_metric([row.step.value], buckets, row.total_seconds)
        yield histogram
        queue = GaugeMetricFamily(
            "utopia_handler_queue_depth",
            "Work waiting for a worker: orders due now, orders scheduled for a later retry, "
            "e-mails not yet sent.",
            labels=["queue"],
        )
        queue.add_metric(["orders_due"], shot.orders_due)
        queue.add_metric(["orders_scheduled"], shot.orders_scheduled)
        queue.add_metric(["emails_pending"], shot.emails.get(NotificationState.PENDING, 0))
        yield queue
        emails = GaugeMetricFamily(
            "utopia_handler_emails", "Staff e-mails by state.", labels=["state"]
        )
        for email_state in NotificationState:
            emails.add_metric([email_state.value], shot.emails.get(email_state, 0))
        yield emails
        yield GaugeMetricFamily(
            "utopia_handler_oldest_waiting_order_age_seconds",
            "Seconds since the oldest order now waiting for a person was received (0: none).",
            value=shot.oldest_waiting_age(self._now),
        )
        yield from _reconcile_metrics(reconciled)


def _reconcile_metrics(numbers: ReconcileNumbers) -> Iterable[Metric]:
    runs = CounterMetricFamily(
        "utopia_handler_reconcile_runs",
        "Reconciliation runs (one per network read), by outcome; dry runs not counted.",
        labels=["outcome"],
    )
    for outcome in ReconcileOutcome:
        runs.add_metric([outcome.value], numbers.runs.get(outcome, 0))
    yield runs
    yield CounterMetricFamily(
        "utopia_handler_reconcile_missed_orders_found",
        "Orders UTOPIA listed that no callback had brought, found and queued by reconciliation "
        "(the baseline's recorded orders not counted).",
        value=numbers.missed_found,
    )
    last_good = GaugeMetricFamily(
        "utopia_handler_reconcile_last_good_timestamp_seconds",
        "When a reconciliation last read the network's order list whole (Unix time, UTC).",
        labels=["network"],
    )
    for network, finished in sorted(numbers.last_good.items()):
        last_good.add_metric([network], finished.replace(tzinfo=UTC).timestamp())
    yield last_good


def _bound(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{value:.1f}"


def render_metrics(store: Store, now: datetime) -> bytes:
    """The Prometheus text exposition of the store's current numbers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(store, now))
    return generate_latest(registry)


def _scrape_allowed(runtime: Runtime) -> bool:
    token = runtime.settings.console.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.casefold() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.reveal().encode()
        )
    # No token: only a scraper on this machine, judged by the socket peer as the server saw it.
    # A reverse proxy here also connects from loopback, so a request that came through one (it
    # adds these headers; the server may have dropped them since) is refused.
    peer = request.environ.get(SOCKET_PEER, request.remote_addr)
    came_through_proxy = request.environ.get(CAME_THROUGH_PROXY)
    if came_through_proxy is None:  # an app run without its PeerRecorder
        came_through_proxy = any(name in request.headers for name in _PROXY_HEADERS)
    return is_local(parse_address(str(peer or ""))) and not came_through_proxy


@bp.get("/metrics")
def metrics() -> Response | tuple[Response, int]:
    runtime: Runtime = current_app.extensions["runtime"]
    if not _scrape_allowed(runtime):
        if runtime.settings.console.metrics_token is not None:
            answer = jsonify({"error": "missing or wrong bearer token"})
            answer.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return answer, 401
        return jsonify({"error": "metrics are served to loopback only; set METRICS_TOKEN"}), 403
    try:
        body = render_metrics(runtime.store, utcnow())
    except SQLAlchemyError:
        return jsonify({"error": "the store does not answer"}), 503
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready for traffic: the store answers and its schema is at the newest migration."""
    runtime: Runtime = current_app.extensions["runtime"]
    if not runtime.store.ping():
        return jsonify({"status": "not ready", "store": "unavailable"}), 503
    try:
        current, heads = migration_status(runtime.store)
    except SQLAlchemyError:
        return jsonify({"status": "not ready", "store": "unavailable"}), 503
    if current != heads:
        return (
            jsonify(
                {
                    "status": "not ready",
                    "store": "ok",
                    "migrations": "behind: run `utopia-handler db upgrade`",
                    "database_revision": sorted(current),
                    "code_revision": sorted(heads),
                }
            ),
            503,
        )
    return jsonify({"status": "ready", "store": "ok", "migrations": "at head"}), 200
