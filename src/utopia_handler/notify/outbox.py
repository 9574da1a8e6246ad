"""The staff e-mail outbox: deliver one claimed e-mail, with the signed contract when there is one.

The worker claims due outbox rows with a lease and hands each to `Outbox.deliver`. Rendering and
composing are `messages`' job, sending is the sender's; here is what ties them to the stored row:
fetch the contract PDF, send, and record the outcome (sent, retry later, or failed for good).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from utopia_handler.clients.errors import OutsideError, RejectedError, RetryableError
from utopia_handler.clients.utopia import Contract
from utopia_handler.lifecycle import RetryPolicy
from utopia_handler.logs import log_event
from utopia_handler.notify.messages import Attachment, OrderFacts, compose
from utopia_handler.store import queries
from utopia_handler.store.models import (
    Notification,
    NotificationKind,
    NotificationState,
    Order,
)

if TYPE_CHECKING:
    from utopia_handler.runtime import Runtime

log = logging.getLogger(__name__)

SHADOW_SUBJECT_PREFIX = "[SHADOW] "
SHADOW_NOBODY = "shadow mode: sent to nobody (SHADOW_EMAIL_RECIPIENTS is empty)"


class Outbox:
    """Delivers claimed outbox rows for one worker (its lease name, clock and retry policy)."""

    def __init__(
        self,
        runtime: Runtime,
        owner: str,
        clock: Callable[[], datetime],
        retry: RetryPolicy,
        rng: random.Random,
    ) -> None:
        self.runtime = runtime
        self.owner = owner
        self.clock = clock
        self.retry = retry
        self.rng = rng

    def deliver(self, notification_id: int, job: MailJob | None = None) -> None:
        """Send one claimed e-mail and record how it went; a fault outside is retried later.

        `job`: the e-mail as read in the transaction that leased it, so it is not read again.
        """
        runtime = self.runtime
        if job is None:
            with runtime.store.write() as session:
                row = queries.owned_notification(session, notification_id, self.owner)
                if row.state != NotificationState.PENDING:
                    return
                order = session.get(Order, row.order_id) if row.order_id is not None else None
                job = mail_job(row, order, runtime.settings.shadow_mode)
        kind, context, message_id, facts = job.kind, job.context, job.message_id, job.facts
        mail = runtime.settings.mail
        if job.shadow:
            # Shadow mode: staff see nothing, unless they named addresses for the trial.
            mail = replace(mail, recipients=runtime.settings.shadow_email_recipients)
            if not mail.recipients:
                self.record(notification_id, skipped=SHADOW_NOBODY)
                log_event(log, "mail.shadow_skipped", kind=kind.value)
                return
        attachment, note = self._contract_attachment(kind, facts)
        rendered = runtime.emails.render(kind, facts, context, note)
        if job.shadow:
            rendered = replace(rendered, subject=f"{SHADOW_SUBJECT_PREFIX}{rendered.subject}")
        message = compose(rendered, mail, message_id, attachment)
        try:
            runtime.mailer.send(message)
        except (RetryableError, RejectedError) as error:
            self.record(notification_id, error=error)
            return
        self.record(notification_id, attachment=attachment.filename if attachment else None)
        log_event(
            log,
            "mail.sent",
            kind=kind.value,
            order=facts.order_ref if facts else context.get("order_ref"),
            attachment=attachment.filename if attachment else None,
        )

    def _contract_attachment(
        self, kind: NotificationKind, facts: OrderFacts | None
    ) -> tuple[Attachment | None, str]:
        """The signed contract PDF to attach, and a sentence for the e-mail saying where it is."""
        # A routed message's or subscriber action's e-mail is not about the contract.
        if kind in (NotificationKind.TEST, NotificationKind.MESSAGE, NotificationKind.SUBSCRIBER):
            return None, ""
        if facts is None or facts.contract is None:
            return None, ""
        if not self.runtime.settings.mail.attach_contract:
            return None, "The signed contract is in UTOPIA's portal."
        try:
            pdf = self.runtime.utopia.download_contract(facts.order_ref)
        except OutsideError as error:
            log_event(
                log,
                "mail.contract_unavailable",
                logging.WARNING,
                order=facts.order_ref,
                error=type(error).__name__,
            )
            return None, (
                f"The signed contract could not be fetched from UTOPIA ({error.message}); "
                "find it in UTOPIA's portal."
            )
        if pdf is None:
            return None, "UTOPIA has no signed contract PDF for this order yet."
        filename = f"{facts.order_ref}.pdf"
        return Attachment(filename, pdf), f"The signed contract is attached as {filename}."

    def record(
        self,
        notification_id: int,
        *,
        error: OutsideError | None = None,
        attachment: str | None = None,
        skipped: str | None = None,
    ) -> None:
        """Record a delivery: sent, failed for good (a refusal, or past the deadline), or retry.

        `skipped`: nothing was sent on purpose (shadow mode with nobody to send to); why.
        """
        now = self.clock()
        with self.runtime.store.write() as session:
            row = queries.owned_notification(session, notification_id, self.owner)
            row.attempts += 1
            row.lease_owner = None
            row.lease_expires_at = None
            if error is None:
                row.state = NotificationState.SENT
                row.sent_at = now
                row.attachment = attachment
                row.last_error = skipped
            elif isinstance(error, RejectedError) or now - row.created_at >= self.retry.deadline:
                row.state = NotificationState.FAILED
                row.last_error = str(error)
            else:
                retry_after = error.retry_after if isinstance(error, RetryableError) else None
                row.next_attempt_at = now + timedelta(
                    seconds=self.retry.delay(row.attempts, retry_after, self.rng)
                )
                row.last_error = str(error)
            state = row.state
        if error is not None:
            log_event(
                log,
                "mail.failed" if state == NotificationState.FAILED else "mail.retry",
                logging.WARNING,
                notification_id=notification_id,
                error=type(error).__name__,
            )


@dataclass(frozen=True)
class MailJob:
    """A claimed e-mail as stored: what sending it needs."""

    kind: NotificationKind
    context: dict[str, Any]
    message_id: str
    facts: OrderFacts | None
    shadow: bool


def mail_job(row: Notification, order: Order | None, shadow_mode: bool) -> MailJob:
    """The e-mail `row` (about `order`, if any) ready to send; `shadow_mode`: the worker's."""
    return MailJob(
        row.kind,
        dict(row.context),
        row.message_id,
        order_facts(order) if order is not None else None,
        order.shadow if order is not None else shadow_mode,
    )


def order_facts(order: Order) -> OrderFacts:
    """What an e-mail may say about an order."""
    return OrderFacts(
        order_ref=order.order_ref,
        contract=Contract.from_json(order.contract) if order.contract else None,
        customer_id=order.customer_id,
        ticket_id=order.ticket_id,
        plans=tuple(f"{p['label']} (service {p['service_id']})" for p in order.plans or ()),
        tags=tuple(order.tags_added or ()),
    )
