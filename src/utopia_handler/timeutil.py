"""Time in one convention: naive datetimes in UTC (SQLite keeps no time zone)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time in UTC, without tzinfo."""
    return datetime.now(UTC).replace(tzinfo=None)
