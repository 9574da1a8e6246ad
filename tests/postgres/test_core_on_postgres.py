"""The key pipeline, exactly-once, site-decision and retention tests, run again unchanged on
PostgreSQL.

They are imported from the SQLite suite; this folder's `base_env` points every fixture at a real
PostgreSQL database, so the same assertions now hold on the second database.
"""

from __future__ import annotations

from tests.test_backup_retention import (
    test_a_purged_order_retried_from_a_later_step_asks_for_the_contract_lookup,
    test_a_year_later_the_order_keeps_its_outcome_but_not_the_customers_data,
    test_the_worker_purges_on_its_own,
)
from tests.test_exactly_once import (
    test_email_whose_final_reply_was_lost_is_resent_with_the_same_message_id,
    test_killed_after_an_outside_write_then_restarted,
    test_killed_as_a_step_begins_then_restarted,
    test_lost_reply_is_reconciled_not_repeated,
    test_lost_ticket_reply_waits_for_a_person_and_a_retry_opens_one_ticket,
)
from tests.test_pipeline import (
    test_every_kind_of_order_ends_where_a_person_expects,
    test_new_order_becomes_a_customer_with_plans_ticket_tags_and_email,
    test_repeated_and_concurrent_deliveries_make_one_order_and_one_customer,
    test_test_callback_sends_one_test_email_and_unlisted_msgs_are_listed,
)
from tests.test_site_changed_hands import (
    test_a_lost_create_reply_after_the_decision_still_makes_exactly_one_new_customer,
    test_new_customer_at_this_site_makes_a_second_account_and_leaves_the_former_alone,
    test_same_person_ends_as_a_duplicate_of_the_former_customer,
)
from utopia_handler.runtime import Runtime

__all__ = [
    "test_a_lost_create_reply_after_the_decision_still_makes_exactly_one_new_customer",
    "test_a_purged_order_retried_from_a_later_step_asks_for_the_contract_lookup",
    "test_a_year_later_the_order_keeps_its_outcome_but_not_the_customers_data",
    "test_email_whose_final_reply_was_lost_is_resent_with_the_same_message_id",
    "test_every_kind_of_order_ends_where_a_person_expects",
    "test_killed_after_an_outside_write_then_restarted",
    "test_killed_as_a_step_begins_then_restarted",
    "test_lost_reply_is_reconciled_not_repeated",
    "test_lost_ticket_reply_waits_for_a_person_and_a_retry_opens_one_ticket",
    "test_new_customer_at_this_site_makes_a_second_account_and_leaves_the_former_alone",
    "test_new_order_becomes_a_customer_with_plans_ticket_tags_and_email",
    "test_repeated_and_concurrent_deliveries_make_one_order_and_one_customer",
    "test_same_person_ends_as_a_duplicate_of_the_former_customer",
    "test_test_callback_sends_one_test_email_and_unlisted_msgs_are_listed",
    "test_the_worker_purges_on_its_own",
]


def test_the_imported_tests_get_a_postgresql_runtime_here(runtime: Runtime) -> None:
    assert runtime.store.engine.dialect.name == "postgresql"
