"""Times in answers and reports: ISO-8601 in UTC, the form the wire contract uses."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC for reports and answers; a moment whose UTC form is out of range
    (year 1 at +01:00, year 9999 at -14:00) as given, never an error."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC).isoformat()
    except (OverflowError, ValueError):
        return moment.isoformat()
