"""Time in one place, always timezone-aware UTC, so records compare and round-trip."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time in UTC, microsecond precision."""
    return datetime.now(UTC)
