"""Claim due work from the store, run one step at a time, record each outcome before the next.

Three kinds of work: orders (the provisioning steps), the e-mail outbox, and the actions of routed
UTOPIA messages (message_actions.py). Each is claimed with a lease that a heartbeat keeps alive.
Beside them run the periodic jobs: the retention purge, and reconciliation with UTOPIA's order
list (one process per period, by a job lease). A worker registers its process (store/leases.py): at start and
at every heartbeat it takes over at once the work of processes of its own machine that are gone;
a crashed worker elsewhere loses its work when its leases expire. This module holds the only
catch-all: any unexpected error is recorded with the order, which then waits for a person.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from utopia_handler import lifecycle
from utopia_handler.clients.errors import RejectedError, RetryableError
from utopia_handler.clients.utopia import Contract
from utopia_handler.logs import log_event
from utopia_handler.message_actions import MessageActionRunner
from utopia_handler.notify.outbox import MailJob, Outbox, mail_job
from utopia_handler.process_identity import is_gone, this_process
from utopia_handler.provisioning import (
    LOCAL_STEPS,
    FormerCustomerAtSite,
    Hold,
    OrderView,
    PlannedService,
    StepResult,
)
from utopia_handler.shadow import WorkContext, working_on
from utopia_handler.store import jobs, leases, queries
from utopia_handler.store.models import (
    ACTIVE_STATES,
    AttemptOutcome,
    MessageAction,
    Order,
    Step,
)
from utopia_handler.subscriber_work import SubscriberActionRunner
from utopia_handler.timeutil import utcnow

if TYPE_CHECKING:
    from utopia_handler.runtime import Runtime

log = logging.getLogger("utopia_handler.worker")


class Worker:
    """Runs orders and e-mails. `start()` for background threads, `run_until_idle()` inline."""

    # The retention purge runs soon after start (so frequent restarts never starve it), then hourly.
    retention_first_seconds = 60.0
    retention_every_seconds = 3600.0
    # A registered worker not heard from for this long is forgotten (its leases ran out long ago).
    forget_silent_after = timedelta(days=1)

    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        wakeup: threading.Event | None = None,
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings.worker
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.concurrency = settings.concurrency
        self.lease = timedelta(seconds=settings.lease_seconds)
        timeouts = runtime.settings.powercode.timeouts
        # The longest a PowerCode call of a process that died may still be answered.
        self.call_window = timedelta(seconds=timeouts.connect + timeouts.read)
        self.poll_seconds = settings.poll_seconds
        self.retry = lifecycle.RetryPolicy.from_settings(settings)
        self.clock = clock
        self.rng = rng or random.Random()
        # E-mails claimed by this worker are delivered by the outbox, under the same lease name.
        self.outbox = Outbox(runtime, self.name, clock, self.retry, self.rng)
        # Routed messages' actions likewise, with the message ticket's own renderer.
        self.messages = MessageActionRunner(
            runtime.store,
            runtime.powercode,
            runtime.message_tickets,
            runtime.settings.provisioning.ticket,
            self.name,
            clock,
            self.retry,
            self.rng,
        )
        # Subscriber actions a person confirmed: few, so one thread runs them one at a time.
        self.subscribers = SubscriberActionRunner(
            runtime.store,
            runtime.utopia,
            runtime.powercode,
            runtime.settings.provisioning.ticket,
            self.name,
            clock,
            self.retry,
            self.rng,
            self.lease,
        )
        self.wakeup = wakeup or threading.Event()
        self._stopping = threading.Event()
        self._heartbeat_stop = threading.Event()
        self._lock = threading.Lock()
        self._orders_in_hand: set[int] = set()
        self._notifications_in_hand: set[int] = set()
        self._messages_in_hand: set[int] = set()
        self._threads: list[threading.Thread] = []
        self._heartbeat_thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # Running -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start claiming in the background with `concurrency` threads, plus a heartbeat.

        First registers this process and takes over the work of gone processes of this machine
        (a restart after a kill), so that work is due before the first claim.
        """
        self._heartbeat([], [], [])
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="work")
        loops: list[tuple[Callable[[], None], str]] = [
            (self._dispatch_loop, "dispatch"),
            (self._heartbeat_loop, "lease"),
            (self._retention_loop, "retention"),
            (self._subscriber_loop, "subscriber"),
        ]
        if self.runtime.settings.reconcile.enabled:
            loops.append((self._reconcile_loop, "reconcile"))
        for target, label in loops:
            thread = threading.Thread(target=target, name=f"worker-{label}", daemon=True)
            thread.start()
            if label == "lease":
                self._heartbeat_thread = thread
            else:
                self._threads.append(thread)
        log_event(log, "worker.started", worker=self.name, concurrency=self.concurrency)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop claiming, let the steps in hand finish, and give back every lease."""
        self._stopping.set()
        self.wakeup.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._pool is not None:
            # The heartbeat goes on meanwhile: a step in hand must not lose its lease while its
            # outside call is out, or another worker could run the same step beside it.
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._heartbeat_stop.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout)
        try:
            with self.runtime.store.write() as session:
                queries.release_all(session, self.name)
                jobs.release_jobs_of(session, self.name)
                leases.forget(session, self.name)
        except SQLAlchemyError:
            log_event(log, "worker.release_failed", logging.WARNING, worker=self.name)
        log_event(log, "worker.stopped", worker=self.name)

    def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Do all work that is due now, in this thread; returns how many items were handled."""
        handled = 0
        for _ in range(max_rounds):
            order_ids, notification_ids, message_ids = self._claim(self.concurrency)
            if not order_ids and not notification_ids and not message_ids:
                # Subscriber actions last: their e-mails are then delivered in the next round.
                ran = self.subscribers.run_due(
                    self.concurrency, shadow=self.runtime.settings.shadow_mode
                )
                if not ran:
                    return handled
                handled += ran
                continue
            for order_id in order_ids:
                self._work_on_order(order_id)
            for message_id in message_ids:
                self._work_on_message_action(message_id)
            for notification_id in notification_ids:
                self._work_on_notification(notification_id)
            handled += len(order_ids) + len(notification_ids) + len(message_ids)
        return handled

    def _claim(
        self, limit: int, *, mail_first: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        now = self.clock()
        with self.runtime.store.write() as session:
            notification_ids: list[int] = []
            if mail_first:
                # A backlog of orders must not hold staff e-mails back until it is gone (the
                # chaos run showed every e-mail waiting for the last order): one goes first.
                notification_ids = queries.claim_due_notifications(
                    session, self.name, 1, now, self.lease
                )
            order_limit = limit - len(notification_ids)
            order_ids = (
                queries.claim_due_orders(
                    session,
                    self.name,
                    order_limit,
                    now,
                    self.lease,
                    shadow=self.runtime.settings.shadow_mode,
                )
                if order_limit > 0
                else []
            )
            free = order_limit - len(order_ids)
            message_ids = (
                queries.claim_due_message_actions(
                    session,
                    self.name,
                    free,
                    now,
                    self.lease,
                    shadow=self.runtime.settings.shadow_mode,
                )
                if free > 0
                else []
            )
            free -= len(message_ids)
            if free > 0:
                notification_ids += queries.claim_due_notifications(
                    session, self.name, free, now, self.lease
                )
        return order_ids, notification_ids, message_ids

    def _dispatch_loop(self) -> None:
        assert self._pool is not None
        while not self._stopping.is_set():
            self.wakeup.clear()
            with self._lock:
                free = (
                    self.concurrency
                    - len(self._orders_in_hand)
                    - len(self._notifications_in_hand)
                    - len(self._messages_in_hand)
                )
                mail_first = not self._notifications_in_hand
            claimed = 0
            if free > 0:
                try:
                    order_ids, notification_ids, message_ids = self._claim(
                        free, mail_first=mail_first
                    )
                except SQLAlchemyError as error:
                    log_event(
                        log, "worker.claim_failed", logging.WARNING, error=type(error).__name__
                    )
                    order_ids, notification_ids, message_ids = [], [], []
                with self._lock:
                    # A lease can run out while its heartbeat waits for a locked database; the
                    # claim then hands us back work a thread of ours still holds. Running it a
                    # second time at once could repeat an outside call, so it stays with its thread.
                    order_ids = [i for i in order_ids if i not in self._orders_in_hand]
                    notification_ids = [
                        i for i in notification_ids if i not in self._notifications_in_hand
                    ]
                    message_ids = [i for i in message_ids if i not in self._messages_in_hand]
                    self._orders_in_hand.update(order_ids)
                    self._notifications_in_hand.update(notification_ids)
                    self._messages_in_hand.update(message_ids)
                for order_id in order_ids:
                    self._pool.submit(
                        self._in_pool, self._work_on_order, order_id, self._orders_in_hand
                    )
                for notification_id in notification_ids:
                    self._pool.submit(
                        self._in_pool,
                        self._work_on_notification,
                        notification_id,
                        self._notifications_in_hand,
                    )
                for message_id in message_ids:
                    self._pool.submit(
                        self._in_pool,
                        self._work_on_message_action,
                        message_id,
                        self._messages_in_hand,
                    )
                claimed = len(order_ids) + len(notification_ids) + len(message_ids)
            if claimed == 0 or claimed == free:
                # Nothing due, or every slot busy: sleep until woken by a callback, a finished
                # item, or the poll interval.
                self.wakeup.wait(self.poll_seconds)

    def _in_pool(self, work: Callable[[int], None], item_id: int, in_hand: set[int]) -> None:
        try:
            work(item_id)
        finally:
            with self._lock:
                in_hand.discard(item_id)
            self.wakeup.set()

    def _heartbeat_loop(self) -> None:
        while not self._heartbeat_stop.wait(self.lease.total_seconds() / 3):
            with self._lock:
                order_ids, notification_ids, message_ids = (
                    list(self._orders_in_hand),
                    list(self._notifications_in_hand),
                    list(self._messages_in_hand),
                )
            self._heartbeat(order_ids, notification_ids, message_ids)

    def _heartbeat(
        self, order_ids: list[int], notification_ids: list[int], message_ids: list[int]
    ) -> None:
        """Keep this process registered and its leases alive; take over gone processes' work."""
        process = this_process()
        try:
            with self.runtime.store.write() as session:
                now = self.clock()  # once the write lock is ours: a wait for it costs no lease
                leases.record_alive(session, self.name, process, now)
                # One call for every kind of work in hand; kinds with nothing in hand cost nothing.
                queries.extend_leases(
                    session,
                    self.name,
                    order_ids,
                    notification_ids,
                    now + self.lease,
                    message_ids,
                    self.subscribers.in_hand,
                )
                taken = [
                    leases.take_over(session, name, now, self.call_window)
                    for name in leases.gone_workers(session, process.host, is_gone)
                ]
                leases.forget_silent(session, now - self.forget_silent_after)
        except SQLAlchemyError as error:
            log_event(log, "worker.heartbeat_failed", logging.WARNING, error=type(error).__name__)
            return
        for dead in taken:
            log_event(
                log,
                "worker.took_over",
                logging.WARNING,
                worker=self.name,
                gone=dead.worker,
                orders=dead.orders,
                in_flight=dead.orders_in_flight,
                notifications=dead.notifications,
                message_actions=dead.message_actions,
            )
        if any(dead.orders or dead.notifications or dead.message_actions for dead in taken):
            self.wakeup.set()

    def _subscriber_loop(self) -> None:
        """Run due subscriber actions one at a time (each renews its lease at every step)."""
        while not self._stopping.wait(self.poll_seconds):
            try:
                if self.subscribers.run_due(1, shadow=self.runtime.settings.shadow_mode):
                    self.wakeup.set()  # their e-mails are due
            except SQLAlchemyError as error:
                log_event(
                    log, "subscriber_action.store_failed", logging.ERROR, error=type(error).__name__
                )

    def _retention_loop(self) -> None:
        """Remove finished orders' raw payloads once they are older than RETENTION_DAYS."""
        from utopia_handler.store.retention import purge_expired

        delay = self.retention_first_seconds
        while not self._stopping.wait(delay):
            delay = self.retention_every_seconds
            try:
                purge_expired(
                    self.runtime.store, self.clock(), self.runtime.settings.retention_days
                )
            except SQLAlchemyError as error:
                log_event(log, "retention.failed", logging.WARNING, error=type(error).__name__)

    def _reconcile_loop(self) -> None:
        """Reconcile with UTOPIA's order list whenever it is due, if no other process does.

        Whose turn it is and when it is due are kept in the database (the job's lease), so
        several workers make one run per period and a restart does not cause an extra one.
        """
        from utopia_handler.reconcile import reconcile_if_due, seconds_until_due

        interval = float(self.runtime.settings.reconcile.interval_seconds)
        delay = 0.0
        while not self._stopping.wait(delay):
            try:
                report = reconcile_if_due(self.runtime, self.clock(), self.name)
                if report is not None and report.found:
                    self.wakeup.set()
                delay = seconds_until_due(self.runtime, self.clock())
            except SQLAlchemyError as error:
                log_event(
                    log, "reconcile.store_failed", logging.WARNING, error=type(error).__name__
                )
                delay = interval
            except Exception as error:  # the catch-all of a run: the loop must outlive a bug
                log_event(log, "reconcile.crashed", logging.ERROR, error=type(error).__name__)
                log.error(
                    "traceback (frames only):\n%s",
                    "".join(traceback.format_tb(error.__traceback__)),
                )
                delay = interval
            # Never busy-wait on a row another worker just took; never sleep past a period.
            delay = min(max(delay, 0.2), interval)

    # Orders ------------------------------------------------------------------------------------

    def _work_on_order(self, order_id: int) -> None:
        """Run the order's steps while they are due; the one catch-all for an order.

        Then send the e-mail its last commit queued and leased to this worker, if any.
        """
        run = _OrderRun()
        try:
            with self.runtime.store.write() as session:
                order = queries.owned_order(session, order_id, self.name)
                prepared = self._prepare_step(session, order, self.clock(), run)
            run.committed()
            # A step in hand is finished even when a stop is asked for: stopping halfway would
            # leave an attempt that may look applied to the next worker.
            while prepared is not None:
                prepared = self._run_step(order_id, prepared, run)
        except queries.LeaseLost:
            run.lease_given_back = True  # another worker's now: nothing of ours to give back
            log_event(log, "order.lease_lost", logging.WARNING, order_id=order_id, worker=self.name)
        except SQLAlchemyError as error:
            # The database failed under us; the lease runs out and the order is taken up again.
            log_event(
                log,
                "order.store_failed",
                logging.ERROR,
                order_id=order_id,
                error=type(error).__name__,
            )
        finally:
            # Every commit that ends the order's turn gives its lease back with it: only an
            # order left halfway (a stop, a failure of the store) costs a transaction here.
            if not run.lease_given_back:
                self._release_order(order_id)
        if run.mail:
            self._send_own_mail(order_id, run.mail)

    def _release_order(self, order_id: int) -> None:
        try:
            with self.runtime.store.write() as session:
                order = session.get(Order, order_id)
                if order is not None and order.lease_owner == self.name:
                    order.lease_owner = None
                    order.lease_expires_at = None
        except SQLAlchemyError:
            pass  # the lease expires on its own

    def _prepare_step(
        self, session: Session, order: Order, now: datetime, run: _OrderRun
    ) -> _Prepared | None:
        """Write the attempt row of the order's current step, if that step is due now.

        A step that makes no outside call (provisioning.LOCAL_STEPS) is run and recorded here,
        in the caller's transaction, and the step after it is prepared instead.
        """
        while order.state in ACTIVE_STATES and order.step != Step.FINISHED:
            if order.next_attempt_at > now:
                return None
            step = order.step
            # The order's unflushed changes are not what this reads: they go out in one UPDATE.
            with session.no_autoflush:
                count, maybe_applied = queries.earlier_attempts(session, order, step)
            view = _order_view(order, count, maybe_applied)
            attempt_id = lifecycle.start_attempt(session, order, self.name, now)
            prepared = _Prepared(step, view, attempt_id, order.step_attempts, order.order_ref)
            if step not in LOCAL_STEPS:
                return prepared
            run.logs.append(("step.start", logging.INFO, prepared.fields()))
            outcome = self._attempt(order.id, prepared)
            if isinstance(outcome, _Failure):
                self._record_failure(session, order, prepared, outcome, now, run)
                return None
            self._record_result(session, order, prepared, outcome, now, run)
            if self._stopping.is_set():
                return None
        return None

    def _run_step(self, order_id: int, prepared: _Prepared, run: _OrderRun) -> _Prepared | None:
        """Run one prepared step and record its outcome; the next step, prepared, if it is due."""
        log_event(log, "step.start", logging.INFO, **prepared.fields())
        outcome = self._attempt(order_id, prepared)
        now = self.clock()
        with self.runtime.store.write() as session:
            order = queries.owned_order(session, order_id, self.name)
            if isinstance(outcome, _Failure):
                self._record_failure(session, order, prepared, outcome, now, run)
                following = None
            else:
                self._record_result(session, order, prepared, outcome, now, run)
                # One commit instead of two per step; not when stopping, so no step starts then.
                following = (
                    self._prepare_step(session, order, now, run)
                    if not run.gives_lease_back and not self._stopping.is_set()
                    else None
                )
        run.committed()
        if run.wake:
            self.wakeup.set()
        return following

    def _attempt(self, order_id: int, prepared: _Prepared) -> StepResult | _Failure:
        """Run one prepared step: its result, or what stopped it (the one catch-all)."""
        step, order_ref = prepared.step, prepared.order_ref
        try:
            # In shadow mode, writes recorded during the step belong to this order and attempt.
            with working_on(WorkContext(order_id, step.value, prepared.attempt_id)):
                return self.runtime.provisioner.run(step, prepared.view)
        except Hold as hold:
            return _Failure(AttemptOutcome.HELD, str(hold), hold)
        except RejectedError as error:
            return _Failure(AttemptOutcome.REJECTED, str(error), error)
        except RetryableError as error:
            return _Failure(None, str(error), error)
        except Exception as error:  # the catch-all: record it with the order, hand it to a person
            log_event(
                log,
                "step.crashed",
                logging.ERROR,
                order=order_ref,
                step=step.value,
                attempt=prepared.attempt_number,
                error=type(error).__name__,
            )
            # Frames only: an exception's message may carry customer data.
            log.error(
                "traceback (frames only):\n%s", "".join(traceback.format_tb(error.__traceback__))
            )
            reason = f"internal error ({type(error).__name__}); the log has the details"
            return _Failure(AttemptOutcome.FAILED, reason, error)

    def _record_result(
        self,
        session: Session,
        order: Order,
        prepared: _Prepared,
        result: StepResult,
        now: datetime,
        run: _OrderRun,
    ) -> None:
        """Record a finished step; an e-mail it queues is leased to this worker, to send next."""
        outcome = lifecycle.StepOutcome(
            result.detail,
            result.changes,
            result.next_step,
            result.final_state,
            result.notify,
            result.notify_context,
        )
        mail = lifecycle.record_step(
            session, order, prepared.attempt_id, prepared.step, outcome, now
        )
        if result.final_state is not None:
            run.gives_lease_back = True
        if mail is not None:
            if self._stopping.is_set():
                run.wake = True
            else:
                notification_id = queries.lease_queued_notification(
                    session, mail, self.name, now + self.lease
                )
                job = mail_job(mail, order, self.runtime.settings.shadow_mode)
                run.new_mail.append((notification_id, job))
        run.logs.append(
            (
                "step.ok",
                logging.INFO,
                {
                    "order": order.order_ref,
                    "step": prepared.step.value,
                    "customer_id": result.changes.get("customer_id"),
                    "ticket_id": result.changes.get("ticket_id"),
                    "state": order.state.value if result.final_state else None,
                },
            )
        )

    def _record_failure(
        self,
        session: Session,
        order: Order,
        prepared: _Prepared,
        failure: _Failure,
        now: datetime,
        run: _OrderRun,
    ) -> None:
        """A step that did not finish: the order retries later, or waits for a person."""
        step, attempt_id, error = prepared.step, prepared.attempt_id, failure.error
        run.gives_lease_back = True  # both give the lease back in this commit
        if isinstance(error, RetryableError):
            gave_up = lifecycle.schedule_retry(
                session, order, attempt_id, step, error, now, self.retry, self.rng
            )
            run.logs.append(
                (
                    "order.gave_up" if gave_up else "step.retry",
                    logging.WARNING,
                    {
                        "order": order.order_ref,
                        "step": step.value,
                        "attempt": order.step_attempts,
                        "error": type(error).__name__,
                        "may_have_applied": error.may_have_applied,
                    },
                )
            )
            return
        assert failure.outcome is not None
        history: str | None = None
        former: lifecycle.FormerCustomer | None = None
        if isinstance(error, FormerCustomerAtSite):
            # The question a person answers with actions.decide_site.
            history = error.history
            former = lifecycle.FormerCustomer(error.customer_id, error.name, error.status)
        lifecycle.hold_for_person(
            session,
            order,
            attempt_id,
            step,
            failure.outcome,
            failure.reason,
            now,
            cause=error,
            history=history,
            former=former,
        )
        run.wake = True
        run.logs.append(
            (
                "order.waiting",
                logging.WARNING,
                {
                    "order": order.order_ref,
                    "step": step.value,
                    "outcome": failure.outcome.value,
                    "error": type(error).__name__,
                    "code": getattr(error, "code", None),
                },
            )
        )

    def _send_own_mail(self, order_id: int, mail: list[tuple[int, MailJob]]) -> None:
        """Send the e-mails the order's commits leased to this worker, in its slot."""
        ids = [notification_id for notification_id, _ in mail]
        with self._lock:
            # The order's lease went back; its e-mail takes its place in hand (the heartbeat).
            self._orders_in_hand.discard(order_id)
            self._notifications_in_hand.update(ids)
        try:
            for notification_id, job in mail:
                self._work_on_notification(notification_id, job)
        finally:
            with self._lock:
                self._notifications_in_hand.difference_update(ids)

    # Routed messages' actions ------------------------------------------------------------------

    def _work_on_message_action(self, action_id: int) -> None:
        """Run one routed message's action; the one catch-all for it."""
        try:
            view = self.messages.prepare(action_id)
            if view is None:
                return
            try:
                # In shadow mode, a ticket or note it would write is recorded with its order.
                # (Its attempt is a message action's, not a step's: no step attempt to name.)
                context = WorkContext(view.order_id, f"message {view.kind.value}", None)
                with working_on(context):
                    result = self.messages.perform(view)
            except Exception as error:  # the catch-all: recorded with the action, a person looks
                log_event(
                    log,
                    "message_action.crashed",
                    logging.ERROR,
                    order=view.order_ref,
                    action=view.kind.value,
                    attempt=view.attempt_number,
                    error=type(error).__name__,
                )
                log.error(
                    "traceback (frames only):\n%s",
                    "".join(traceback.format_tb(error.__traceback__)),
                )
                result = self.messages.crashed(error)
            self.messages.record(view, result)
        except queries.LeaseLost:
            log_event(log, "message_action.lease_lost", logging.WARNING, action_id=action_id)
        except SQLAlchemyError as error:
            log_event(
                log,
                "message_action.store_failed",
                logging.ERROR,
                action_id=action_id,
                error=type(error).__name__,
            )
        finally:
            self._release_message_action(action_id)

    def _release_message_action(self, action_id: int) -> None:
        try:
            with self.runtime.store.write() as session:
                queries.give_back(session, MessageAction, action_id, self.name)
        except SQLAlchemyError:
            pass  # the lease expires on its own

    # Notifications -----------------------------------------------------------------------------

    def _work_on_notification(self, notification_id: int, job: MailJob | None = None) -> None:
        try:
            self.outbox.deliver(notification_id, job)
        except queries.LeaseLost:
            log_event(log, "mail.lease_lost", logging.WARNING, notification_id=notification_id)
        except Exception as error:  # catch-all for e-mail: never lose it; try again later
            log_event(
                log,
                "mail.crashed",
                logging.ERROR,
                notification_id=notification_id,
                error=type(error).__name__,
            )
            log.error(
                "traceback (frames only):\n%s", "".join(traceback.format_tb(error.__traceback__))
            )
            self.outbox.record(
                notification_id,
                error=RetryableError("mail", f"internal error ({type(error).__name__})"),
            )


@dataclass(frozen=True)
class _Prepared:
    """A step whose attempt row is written: what it needs to run."""

    step: Step
    view: OrderView
    attempt_id: int
    attempt_number: int
    order_ref: str

    def fields(self) -> dict[str, object]:
        return {"order": self.order_ref, "step": self.step.value, "attempt": self.attempt_number}


@dataclass(frozen=True)
class _Failure:
    """A step that did not finish: the attempt's outcome (None: retry later), why, and the error."""

    outcome: AttemptOutcome | None
    reason: str
    error: BaseException


@dataclass
class _OrderRun:
    """What one turn of work on an order has committed so far, and what its open transaction
    will have done once it commits (nothing of that counts if the commit fails)."""

    lease_given_back: bool = False  # a commit gave the order's lease back (it ended or waits)
    mail: list[tuple[int, MailJob]] = field(default_factory=list)  # e-mails leased to us
    wake: bool = False  # an e-mail was queued for the outbox's next claim
    # The open transaction's part:
    gives_lease_back: bool = False
    new_mail: list[tuple[int, MailJob]] = field(default_factory=list)
    logs: list[tuple[str, int, dict[str, object]]] = field(default_factory=list)

    def committed(self) -> None:
        """The open transaction committed: take its part, and log its events (never before)."""
        self.lease_given_back = self.lease_given_back or self.gives_lease_back
        self.mail += self.new_mail
        self.new_mail.clear()
        for event, level, fields in self.logs:
            log_event(log, event, level, **fields)
        self.logs.clear()


def _order_view(order: Order, earlier_attempts: int, maybe_applied: bool) -> OrderView:
    return OrderView(
        order_ref=order.order_ref,
        contract=Contract.from_json(order.contract) if order.contract else None,
        plans=tuple(PlannedService.from_json(p) for p in order.plans or ()),
        customer_id=order.customer_id,
        customer_created=order.customer_created,
        ticket_id=order.ticket_id,
        earlier_attempts=earlier_attempts,
        maybe_applied=maybe_applied,
        former_customer_id=order.former_customer_id,
        site_decision=order.site_decision,
    )
