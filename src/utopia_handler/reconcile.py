"""Reconciliation with UTOPIA: no order is lost when its callback never arrives.

Once a period one process (the `reconcile` job lease, store/jobs.py) reads the order list of each
network (UTOPIA_NETWORKS) and compares it with the orders known here:
- a network's first good run is its baseline: each listed order not known yet is recorded, not
  provisioned (`lifecycle.record_known_order`), since an ISP moving to this handler must not get
  a second customer for years of old orders; a person provisions those that are theirs to do;
- afterwards an order no row knows (its callback never came) is created as a callback creates it
  (`lifecycle.queue_found_order`) with "found by reconciliation; no callback received" in its
  history (an audit row by `reconciliation`), and staff get one e-mail per run listing them;
- an order known in any state changes nothing; a callback that comes later is a repeat.

A list that cannot be read (UTOPIA down, 401, timeout, a reply that is no readable list) is
recorded as "could not read UTOPIA's order list", never as "no orders missed"; nothing else
changes and the next period tries again. When no run has read every list for
RECONCILE_ALERT_HOURS, staff get one e-mail, and another only after a good run since.

What is read from UTOPIA happens outside any transaction; what it leads to is written in one
transaction, after checking this process still holds the job, so a run counts whole or not at all.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from utopia_handler import actions, audit, lifecycle
from utopia_handler.clients.errors import OutsideError
from utopia_handler.clients.utopia_orders import OrderList
from utopia_handler.logs import log_event
from utopia_handler.store import jobs, queries
from utopia_handler.store.models import (
    JobLease,
    NotificationKind,
    Order,
    OrderState,
    ReconcileOutcome,
    ReconcileRun,
)

if TYPE_CHECKING:
    from utopia_handler.runtime import Runtime
    from utopia_handler.settings import Settings

log = logging.getLogger(__name__)

JOB = "reconcile"
#: How the audit log and an order's history name what reconciliation did.
ACTOR = "reconciliation"
FOUND_NOTE = "found by reconciliation; no callback received"
BASELINE_REASON = (
    "listed by UTOPIA before this handler's first reconciliation; not provisioned "
    "(provision it by hand if it is yours to do)"
)
UNREAD = "could not read UTOPIA's order list"
BUSY = "another process is reconciling right now; try again shortly"
LOST = "another process took the job over while UTOPIA answered; it reconciles instead"
# An order ref's year and month: UIA + YYYYMM + "-" + 6 digits.
_REF_MONTH = re.compile(r"UIA(\d{4})(\d{2})-\d{6}", re.IGNORECASE | re.ASCII)
# Refs compared per query: well under every database's limit of bound parameters.
_CHUNK = 500
# How many refs a report line names before it only counts the rest.
_SHOWN_REFS = 20


def network_label(network: str | None) -> str:
    """A network as people read it; "default" for a call without `network`."""
    return network or "default"


@dataclass(frozen=True)
class NetworkResult:
    """One network's order list in one run: read or not, and what was new."""

    network: str | None
    outcome: ReconcileOutcome
    listed: int = 0
    new_refs: tuple[str, ...] = ()
    baseline: bool = False
    error: str = ""  # why the list was not read; never a quote of UTOPIA's reply

    @property
    def label(self) -> str:
        return network_label(self.network)


@dataclass(frozen=True)
class ReconcileReport:
    """What one reconciliation found and did (or, on a dry run, would do)."""

    started_at: datetime
    dry_run: bool
    results: tuple[NetworkResult, ...] = ()
    not_run: str = ""  # why nothing was done at all
    alerted: bool = False  # staff were e-mailed that the lists have not been read for long
    run_ids: tuple[int, ...] = field(default=(), compare=False)

    @property
    def read_every_list(self) -> bool:
        """Whether the run happened and every network's list was read whole."""
        return not self.not_run and all(r.outcome == ReconcileOutcome.OK for r in self.results)

    @property
    def found(self) -> tuple[str, ...]:
        """Orders found with no callback (queued for provisioning, or would be)."""
        return tuple(ref for r in self.results if not r.baseline for ref in r.new_refs)

    def lines(self) -> list[str]:
        """The report for a person, one line per network."""
        if self.not_run:
            return [f"not run: {self.not_run}"]
        lines = [_result_line(result, self.dry_run) for result in self.results]
        if self.dry_run:
            lines.append("dry run: no order was changed and no e-mail sent")
        if self.alerted:
            lines.append("staff were e-mailed: UTOPIA's order list has not been read for too long")
        return lines


def _refs_text(refs: tuple[str, ...]) -> str:
    shown = ", ".join(refs[:_SHOWN_REFS])
    more = len(refs) - _SHOWN_REFS
    return f"{shown} and {more} more" if more > 0 else shown


def _result_line(result: NetworkResult, dry_run: bool) -> str:
    head = f"network {result.label}:"
    if result.outcome != ReconcileOutcome.OK:
        return f"{head} {result.error}; nothing changed, tried again next period"
    count = len(result.new_refs)
    if not count:
        return f"{head} listed {result.listed}; every listed order is known here"
    orders = f"{count} order{'s' if count != 1 else ''}"
    if result.baseline:
        verb = "would be recorded" if dry_run else "recorded"
        return (
            f"{head} listed {result.listed}; first reconciliation (baseline): {orders} not known "
            f"here {verb}, not provisioned: {_refs_text(result.new_refs)}"
        )
    verb = "would be queued" if dry_run else "queued"
    return (
        f"{head} listed {result.listed}; {orders} with no callback {verb} for provisioning: "
        f"{_refs_text(result.new_refs)}"
    )


def job_lease(settings: Settings) -> timedelta:
    """How long a run holds the job: every network's list call timing out, plus a lease."""
    timeouts = settings.utopia.timeouts
    calls = len(settings.utopia.reconciled_networks()) * (timeouts.connect + timeouts.read)
    return timedelta(seconds=settings.worker.lease_seconds + calls)


def _owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def reconcile(
    runtime: Runtime, now: datetime, *, dry_run: bool = False, owner: str | None = None
) -> ReconcileReport:
    """Reconcile every network's order list with the orders known here, now.

    A dry run reads the lists and reports what it would do; it records its run rows (marked
    dry run: never a baseline, never "good" for the alert) and changes nothing else. Otherwise
    the job's lease is taken first: while another process holds it, nothing is done.
    """
    if dry_run:
        return _run(runtime, now, None, dry_run=True)
    return _run_as_job(runtime, now, owner or _owner_name(), every=None) or ReconcileReport(
        now, dry_run=False, not_run=BUSY
    )


def reconcile_if_due(runtime: Runtime, now: datetime, owner: str) -> ReconcileReport | None:
    """Reconcile if a period has passed since the last run began and no one else runs it.

    The worker's loop calls this; None when it was not this process's turn.
    """
    every = timedelta(seconds=runtime.settings.reconcile.interval_seconds)
    return _run_as_job(runtime, now, owner, every=every)


def seconds_until_due(runtime: Runtime, now: datetime) -> float:
    """Seconds until reconciliation is next due, whoever runs it (0: due now)."""
    every = timedelta(seconds=runtime.settings.reconcile.interval_seconds)
    with runtime.store.read() as session:
        return jobs.seconds_until_due(session, JOB, every, now)


def _run_as_job(
    runtime: Runtime, now: datetime, owner: str, *, every: timedelta | None
) -> ReconcileReport | None:
    with runtime.store.write() as session:
        taken = jobs.take_job(session, JOB, owner, now, job_lease(runtime.settings), every=every)
    if not taken:
        return None
    try:
        return _run(runtime, now, owner, dry_run=False)
    except jobs.JobLost:
        # Our lease ran out while UTOPIA answered and another process took the job: its run
        # counts, this one's reading is dropped whole.
        log_event(log, "reconcile.job_lost", logging.WARNING, owner=owner)
        return ReconcileReport(now, dry_run=False, not_run=LOST)
    finally:
        try:
            with runtime.store.write() as session:
                jobs.release_job(session, JOB, owner)
        except SQLAlchemyError:
            pass  # the lease runs out on its own


def _read_list(runtime: Runtime, network: str | None) -> tuple[ReconcileOutcome, str, OrderList]:
    """One network's order list, or why it could not be read."""
    empty = OrderList((), readable=False)
    try:
        listing = runtime.utopia.list_orders(network=network)
    except OutsideError as error:
        return ReconcileOutcome.FAILED, f"{UNREAD}: {error}", empty
    if not listing.readable:
        return ReconcileOutcome.UNREADABLE, f"{UNREAD}: {listing.note}", empty
    return ReconcileOutcome.OK, "", listing


def _run(runtime: Runtime, now: datetime, owner: str | None, *, dry_run: bool) -> ReconcileReport:
    settings = runtime.settings
    clock_start = time.monotonic()
    read = [
        (network, *_read_list(runtime, network))
        for network in settings.utopia.reconciled_networks()
    ]
    finished = now + timedelta(seconds=time.monotonic() - clock_start)
    results: list[NetworkResult] = []
    run_ids: list[int] = []
    alerted = False
    with runtime.store.write() as session:
        job = jobs.owned_job(session, JOB, owner) if owner is not None else None
        for network, outcome, error, listing in read:
            result, run_id = _record(
                session,
                network,
                outcome,
                error,
                listing,
                now,
                finished,
                dry_run=dry_run,
                shadow=settings.shadow_mode,
            )
            results.append(result)
            run_ids.append(run_id)
        if job is not None:
            found = [(r.label, ref) for r in results if not r.baseline for ref in r.new_refs]
            if found:
                _enqueue_missed(session, found, run_ids[0], now)
            every_list_read = all(r.outcome == ReconcileOutcome.OK for r in results)
            alerted = _alert_if_stale(session, job, results, now, every_list_read, settings)
    for result in results:
        log_event(
            log,
            "reconcile.dry_run" if dry_run else "reconcile.run",
            logging.INFO if result.outcome == ReconcileOutcome.OK else logging.WARNING,
            network=result.label,
            outcome=result.outcome.value,
            listed=result.listed,
            new=len(result.new_refs),
            baseline=result.baseline,
        )
        if not dry_run and not result.baseline:
            for ref in result.new_refs:
                log_event(log, "reconcile.found", logging.WARNING, order=ref, network=result.label)
    if not dry_run and any(r.new_refs and not r.baseline for r in results):
        runtime.wakeup.set()  # a worker in this process starts on them at once
    return ReconcileReport(now, dry_run, tuple(results), alerted=alerted, run_ids=tuple(run_ids))


def _record(
    session: Session,
    network: str | None,
    outcome: ReconcileOutcome,
    error: str,
    listing: OrderList,
    now: datetime,
    finished: datetime,
    *,
    dry_run: bool,
    shadow: bool = False,
) -> tuple[NetworkResult, int]:
    """One network's run row and, on a real run, the orders its list brings."""
    run = ReconcileRun(
        started_at=now,
        finished_at=finished,
        network=network,
        outcome=outcome,
        dry_run=dry_run,
        baseline=False,
        listed_count=0,
        new_count=0,
        error=error[:2000] or None,
        new_refs=None,
    )
    session.add(run)
    session.flush()
    if outcome != ReconcileOutcome.OK:
        return NetworkResult(network, outcome, error=error), run.id
    refs = [order.order_ref for order in listing.orders]
    sites = {order.order_ref: order.site_id for order in listing.orders}
    baseline = not _had_good_run(session, network, run.id)
    known = _known_refs(session, refs)
    new = [ref for ref in refs if ref not in known]
    if not dry_run:
        label = network_label(network)
        new = [
            ref
            for ref in new
            if _add_order(
                session, ref, sites.get(ref, ""), baseline, now, label, run.id, shadow=shadow
            )
        ]
    run.baseline = baseline
    run.listed_count = len(refs)
    run.new_count = len(new)
    run.new_refs = new or None
    return NetworkResult(network, outcome, len(refs), tuple(new), baseline), run.id


def _had_good_run(session: Session, network: str | None, this_run: int) -> bool:
    """Whether a real run read this network's list before (else this one is its baseline)."""
    found = session.scalar(
        select(ReconcileRun.id)
        .where(
            ReconcileRun.network.is_not_distinct_from(network),
            ReconcileRun.outcome == ReconcileOutcome.OK,
            ReconcileRun.dry_run.is_(False),
            ReconcileRun.id != this_run,
        )
        .limit(1)
    )
    return found is not None


def _known_refs(session: Session, refs: list[str]) -> set[str]:
    """Those of `refs` an order row has, in any state (compared without case)."""
    known: set[str] = set()
    for start in range(0, len(refs), _CHUNK):
        chunk = [ref.upper() for ref in refs[start : start + _CHUNK]]
        known.update(
            session.scalars(
                select(func.upper(Order.order_ref)).where(func.upper(Order.order_ref).in_(chunk))
            )
        )
    return {ref for ref in refs if ref.upper() in known}


def _add_order(
    session: Session,
    ref: str,
    site_id: str,
    baseline: bool,
    now: datetime,
    network: str,
    run_id: int,
    *,
    shadow: bool = False,
) -> bool:
    """Record (baseline) or queue (found) one order; False if a callback stored it meanwhile."""
    try:
        # A savepoint: a callback committing the same ref at this moment (PostgreSQL) costs
        # this one order, not the run.
        with session.begin_nested():
            if baseline:
                lifecycle.record_known_order(
                    session, ref, BASELINE_REASON, now, site_id=site_id or None
                )
                return True
            order = lifecycle.queue_found_order(session, ref, now, shadow=shadow)
            if order is None:
                return False
            audit.record(
                session,
                ACTOR,
                "queued_for_provisioning",
                now,
                order_ref=ref,
                detail=f"{FOUND_NOTE} (network {network}, run #{run_id})",
            )
            return True
    except IntegrityError:
        return False


def _enqueue_missed(
    session: Session, found: list[tuple[str, str]], run_id: int, now: datetime
) -> None:
    """One staff e-mail listing every order this run found; its Message-ID names the run."""
    queries.enqueue_staff_notification(
        session,
        NotificationKind.MISSED_ORDERS,
        f"{NotificationKind.MISSED_ORDERS.value}.run{run_id}",
        {"found": [{"order_ref": ref, "network": label} for label, ref in found]},
        now,
    )


def _alert_if_stale(
    session: Session,
    job: JobLease,
    results: list[NetworkResult],
    now: datetime,
    every_list_read: bool,
    settings: Settings,
) -> bool:
    """Note a good run, or e-mail staff once when no run has read every list for too long."""
    if every_list_read:
        job.last_good_at = now
        return False
    since = job.last_good_at or session.scalar(
        select(func.min(ReconcileRun.started_at)).where(ReconcileRun.dry_run.is_(False))
    )
    alert_after = timedelta(seconds=settings.reconcile.alert_seconds)
    if since is None or now - since < alert_after:
        return False
    if job.alerted_at is not None and (
        job.last_good_at is None or job.alerted_at > job.last_good_at
    ):
        return False  # alerted already, and no good run since
    hours = settings.reconcile.alert_seconds / 3600
    queries.enqueue_staff_notification(
        session,
        NotificationKind.RECONCILE_STALE,
        f"{NotificationKind.RECONCILE_STALE.value}.{since:%Y%m%dT%H%M%S}",
        {
            "since": f"{since:%Y-%m-%d %H:%M} UTC",
            "never_read": job.last_good_at is None,
            "hours": f"{hours:g}",
            "problems": [
                f"{r.label}: {r.error}" for r in results if r.outcome != ReconcileOutcome.OK
            ],
        },
        now,
    )
    job.alerted_at = now
    log_event(log, "reconcile.alerted", logging.WARNING, since=f"{since:%Y-%m-%dT%H:%M:%S}")
    return True


# Provisioning the baseline by hand ----------------------------------------------------------------


def ref_month(order_ref: str) -> tuple[int, int] | None:
    """The (year, month) an order ref carries (UIA + YYYYMM + ...), or None when it has none."""
    match = _REF_MONTH.fullmatch(order_ref.strip())
    if match is None:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    return (year, month) if 1 <= month <= 12 else None


@dataclass(frozen=True)
class SinceReport:
    """What `provision_since` provisioned (or would), and what it left."""

    since: date
    dry_run: bool
    provisioned: tuple[str, ...]
    earlier: int  # recorded orders of an earlier month, left as they are
    no_month: tuple[str, ...]  # refs that carry no month (another network's form): left

    def lines(self) -> list[str]:
        """The report for a person."""
        month = f"{self.since:%Y-%m}"
        count = len(self.provisioned)
        verb = "would be queued" if self.dry_run else "queued"
        lines = [
            f"{count} recorded order{'s' if count != 1 else ''} of {month} or later {verb} "
            f"for provisioning{': ' + _refs_text(self.provisioned) if count else ''}",
            f"{self.earlier} recorded order{'s' if self.earlier != 1 else ''} of earlier "
            "months left as they are",
        ]
        if self.no_month:
            lines.append(
                f"left because their ref carries no month (provision them one by one): "
                f"{_refs_text(self.no_month)}"
            )
        return lines


def provision_since(
    runtime: Runtime, since: date, now: datetime, actor: str, *, dry_run: bool = False
) -> SinceReport:
    """Provision the recorded orders whose ref month is `since`'s month or later.

    An order ref carries only a year and a month (UIA + YYYYMM), so the day of `since` is
    ignored: 2026-11-20 provisions every recorded order of November 2026 onward. Each goes
    through `actions.provision_recorded_order` (lifecycle.provision_recorded, audited as `actor`).
    """
    wanted = (since.year, since.month)
    provisioned: list[str] = []
    no_month: list[str] = []
    earlier = 0
    with runtime.store.read() if dry_run else runtime.store.write() as session:
        recorded = list(
            session.scalars(
                select(Order).where(Order.state == OrderState.RECORDED).order_by(Order.order_ref)
            )
        )
        for order in recorded:
            month = ref_month(order.order_ref)
            if month is None:
                no_month.append(order.order_ref)
            elif month < wanted:
                earlier += 1
            else:
                if not dry_run:
                    actions.provision_recorded_order(
                        session,
                        order.order_ref,
                        now,
                        actor=actor,
                        why=f"since {since:%Y-%m}",
                        shadow=runtime.settings.shadow_mode,
                    )
                provisioned.append(order.order_ref)
    if provisioned and not dry_run:
        runtime.wakeup.set()
    return SinceReport(since, dry_run, tuple(provisioned), earlier, tuple(no_month))
