"""The routing tests that touch the callback's plain-SQL look-up, the claims and every action,
run again unchanged on PostgreSQL (this folder's `base_env` points every fixture at it)."""

from __future__ import annotations

from tests.test_routing import (
    routed,
    test_a_lost_message_ticket_reply_is_never_sent_twice,
    test_a_message_for_an_unknown_order_records_it_and_a_new_order_provisions_it,
    test_a_note_written_but_not_recorded_is_found_and_not_written_again,
    test_a_repeated_delivery_starts_nothing_even_when_sent_at_once,
    test_hold_stops_an_order_being_provisioned_until_a_person_retries_it,
    test_notify_emails_staff_once_with_the_message_and_the_orders_facts,
    test_the_not_handled_list_spans_orders_and_ignored_messages_stay_off_it,
    web,
    worker,
)
from utopia_handler.runtime import Runtime

__all__ = [
    "routed",
    "test_a_lost_message_ticket_reply_is_never_sent_twice",
    "test_a_message_for_an_unknown_order_records_it_and_a_new_order_provisions_it",
    "test_a_note_written_but_not_recorded_is_found_and_not_written_again",
    "test_a_repeated_delivery_starts_nothing_even_when_sent_at_once",
    "test_hold_stops_an_order_being_provisioned_until_a_person_retries_it",
    "test_notify_emails_staff_once_with_the_message_and_the_orders_facts",
    "test_the_not_handled_list_spans_orders_and_ignored_messages_stay_off_it",
    "web",
    "worker",
]


def test_the_routed_runtime_is_postgresql_here(routed: Runtime) -> None:
    assert routed.store.engine.dialect.name == "postgresql"
    assert [route.action for route in routed.settings.routing.messages] == [
        "hold",
        "ticket",
        "note",
        "notify",
        "ignore",
    ]
