"""The group commit tests, run again unchanged on PostgreSQL (this folder's `base_env`)."""

from __future__ import annotations

from tests.test_group_commit import (
    busy_runtime,
    test_a_write_that_waits_longer_than_allowed_is_refused_and_not_stored,
    test_concurrent_callbacks_are_each_answered_once_committed_and_stored_exactly_once,
    test_one_failing_write_in_a_batch_fails_alone_and_the_others_are_stored,
    test_writes_that_arrive_during_a_commit_share_the_next_and_wait_for_it,
    web,
)

__all__ = [
    "busy_runtime",
    "test_a_write_that_waits_longer_than_allowed_is_refused_and_not_stored",
    "test_concurrent_callbacks_are_each_answered_once_committed_and_stored_exactly_once",
    "test_one_failing_write_in_a_batch_fails_alone_and_the_others_are_stored",
    "test_writes_that_arrive_during_a_commit_share_the_next_and_wait_for_it",
    "web",
]
