"""Timestamps stored as fixed-width UTC text, so string order is time order.

Every store that keeps times as text (SQLite columns, Cosmos DB document fields) uses this
one format, so an index or a query can range-scan times with plain string comparison.
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_text(moment: datetime) -> str:
    """``2026-11-26T07:03:00.000000Z`` for any timezone-aware moment."""
    return moment.astimezone(UTC).strftime(FORMAT)


def from_text(text: str) -> datetime:
    """The aware UTC datetime of a ``to_text`` string."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC)

