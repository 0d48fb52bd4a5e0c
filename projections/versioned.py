"""Applying events to a read model row that records the stream version it reflects.

Both projections (the availability view and the movement ledger) keep, per SKU-location,
the version of the last event applied, written atomically with the figures, and refuse an
event that is not the next one. That makes them idempotent (an event at or below the
row's version is a duplicate: a redelivery, a replay) and gap-proof (an event beyond the
next version first reads the missing events from the event store). The loop is here once;
each projection says how to apply one event and how to read its row's version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, TypeVar

Outcome = Literal["applied", "duplicate", "caught-up"]

ATTEMPTS = 8
"""Re-reads after a refused apply before giving up: another writer kept moving the row, so
it is at or past this event by now."""

Change = TypeVar("Change")


def apply_in_order(
    change: Change,
    version: int,
    apply: Callable[[Change], bool],
    row_version: Callable[[], int],
    missing: Callable[[int], Iterable[Change]],
) -> Outcome:
    """Apply ``change`` (the event at stream ``version``) to its row.

    ``apply`` writes a change only if the row is exactly at its version − 1 (False
    otherwise); ``row_version`` reads the row's version; ``missing(current)`` gives the
    changes after ``current`` up to ``version``, oldest first, read from the stream.
    """
    for _ in range(ATTEMPTS):
        # The next version is the common case, so try it first: apply() itself checks
        # the version atomically, and only a refusal needs a second look.
        if apply(change):
            return "applied"
        current = row_version()
        if version <= current:
            return "duplicate"
        if version > current + 1:
            # The stream read may not reach ``change`` yet: apply it last (a no-op if it did).
            for earlier in [*missing(current), change]:
                apply(earlier)
            return "caught-up"
    return "duplicate"
