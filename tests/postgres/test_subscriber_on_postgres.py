"""The subscriber actions' tests, run again unchanged on PostgreSQL (this folder's `base_env`
points every fixture at it): the claim, the JSON steps, the retries and the read-backs."""

from __future__ import annotations

from tests.test_subscriber_actions import (
    test_a_cancel_cancels_in_utopia_sets_the_status_and_opens_a_ticket,
    test_a_lost_ticket_reply_waits_for_a_person_instead_of_a_second_ticket,
    test_a_suspend_then_an_unsuspend_keep_both_systems_in_step_with_notes_audit_and_mail,
    test_a_utopia_reply_lost_after_applying_is_read_back_and_not_sent_again,
    test_powercode_down_after_utopia_applied_is_retried_without_sending_utopia_again,
)
from utopia_handler.runtime import Runtime

__all__ = [
    "test_a_cancel_cancels_in_utopia_sets_the_status_and_opens_a_ticket",
    "test_a_lost_ticket_reply_waits_for_a_person_instead_of_a_second_ticket",
    "test_a_suspend_then_an_unsuspend_keep_both_systems_in_step_with_notes_audit_and_mail",
    "test_a_utopia_reply_lost_after_applying_is_read_back_and_not_sent_again",
    "test_powercode_down_after_utopia_applied_is_retried_without_sending_utopia_again",
]


def test_the_runtime_is_postgresql_here(runtime: Runtime) -> None:
    assert runtime.store.engine.dialect.name == "postgresql"
