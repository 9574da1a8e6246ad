"""The shared pieces under both HTTP clients: Retry-After, quoting vendor text, tolerant reading."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from utopia_handler.clients.http import as_int, as_text, clip, get_field, parse_retry_after

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0.25", 0.25),
        ("Fri, 20 Nov 2026 12:01:30 GMT", 90.0),
        ("Fri, 20 Nov 2026 11:00:00 GMT", 0.0),  # already past: retry now, not a negative wait
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_in_seconds_or_as_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_clip_masks_secrets_flattens_and_cuts() -> None:
    text = "bad key abc123\n" + "x" * 500

    clipped = clip(text, ["abc123"])

    assert "abc123" not in clipped
    assert "\n" not in clipped
    assert len(clipped) == 200
    assert clipped.startswith("bad key *** xxx")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10517, 10517), ("10517", 10517), (" 42 ", 42), (7.0, 7), (7.5, None), ("", None),
     ("12a", None), (None, None), (True, None), ([1], None)],
)  # fmt: skip
def test_ids_arrive_as_numbers_or_strings(value: Any, expected: int | None) -> None:
    assert as_int(value) == expected


def test_text_of_scalars_only() -> None:
    assert [as_text(v) for v in (" a ", 5, None, {"a": 1}, [1])] == ["a", "5", "", "", ""]


def test_field_lookup_forgives_vendor_casing() -> None:
    assert get_field({"CustomerID": 5}, "customerID") == 5
    assert get_field({"customerId": 6, "customerID": 7}, "customerID") == 7
    assert get_field({}, "customerID") is None
