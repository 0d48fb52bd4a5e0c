"""The availability projection: stock per SKU-location and per SKU across locations.

It is fed CloudEvents (from the ``availability`` subscription, or from the event store
when it catches up). Every event carries the position after it, so applying an event is
an absolute state transition: "at version V the position is X". The view records the
version it reflects in the same atomic write as the figures, which makes the projection
idempotent (an event at or below the recorded version is a no-op) and gap-proof (an
event beyond the next version first reads the missing events from the event store, so
a dead-lettered or lost message cannot leave a hole).

Since stock states each row also holds the held part of on hand
(``damaged``, ``quality_control``), ``incoming_total`` and ``in_transit``, read from the
same "position after" members of the event (absent from documents published before
states: nothing held or incoming).

The projection also keeps the open reservations' expiry times, so the expiry sweep can
find overdue reservations without reading every stream.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from application.ports import AvailabilityViews, History
from application.views import AvailabilityChange, ProjectionStatus, ViewRow
from contracts.cloudevents import to_cloudevent
from domain.stock_item import StockItem
from projections.versioned import Outcome, apply_in_order

NAME = "availability"

def projection_status(views: AvailabilityViews, lag: float | None = None) -> ProjectionStatus:
    """The projection's status as its views tell it (from any process)."""
    stored = views.last_lag_seconds()
    return ProjectionStatus(NAME, views.events_applied(), lag if stored is None else stored)


class AvailabilityProjection:
    """Applies events to the availability view, idempotently and without holes."""

    name = NAME

    def __init__(self, views: AvailabilityViews, history: History) -> None:
        self.views = views
        self.history = history
        self.last_lag_seconds: float | None = None

    def status(self) -> ProjectionStatus:
        """Events reflected, and the lag of the last event applied (commit to view)."""
        return projection_status(self.views, self.last_lag_seconds)

    def handle(self, document: dict[str, Any]) -> Outcome:
        """Apply one CloudEvent document (already validated against the registry)."""
        change = AvailabilityChange.from_cloudevent(document)
        outcome = apply_in_order(
            change, change.version, self.views.apply,
            lambda: self.views.version_of(change.sku, change.location),
            lambda current: [AvailabilityChange.from_cloudevent(to_cloudevent(event))
                             for event in self.history(change.sku, change.location, current,
                                                       change.version)])
        if outcome == "applied":
            lag = (datetime.now(UTC) - change.occurred_at).total_seconds()
            self.last_lag_seconds = max(lag, 0.0)
        return outcome

    def rebuild_stream(self, sku: str, location: str, events: list[StockItem.Event]) -> None:
        """Overwrite one row from the stream's full history (repair)."""
        if not events:
            return
        expiries: dict[str, datetime] = {}
        last = events[-1]
        for event in events:
            change = AvailabilityChange.from_cloudevent(to_cloudevent(event))
            if change.reservation_expiry is not None:
                order_id, expires_at = change.reservation_expiry
                if expires_at is None:
                    expiries.pop(order_id, None)
                else:
                    expiries[order_id] = expires_at
            if change.closed_reservation is not None:
                expiries.pop(change.closed_reservation, None)
        self.views.replace(
            ViewRow(
                sku, location, last.originator_version, last.on_hand, last.reserved,
                last.available, last.timestamp, last.damaged, last.quality_control,
                last.incoming_total, last.in_transit,
            ),
            expiries,
        )
