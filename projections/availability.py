"""The availability projection: stock per SKU-location and per SKU across locations.

It is fed CloudEvents (from the ``availability`` subscription, or from the event store
when it catches up). Every event carries the position after it, so applying an event is
an absolute state transition: "at version V the position is X". The view records the
version it reflects in the same atomic write as the figures, which makes the projection
idempotent (an event at or below the recorded version is a no-op) and gap-proof (an
event beyond the next version first reads the missing events from the event store, so
a dead-lettered or lost message cannot leave a hole).

The projection also keeps the open reservations' expiry times, so the expiry sweep can
find overdue reservations without reading every stream.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from application.views import AvailabilityReader, ProjectionStatus
from contracts.cloudevents import to_cloudevent
from domain.stock_item import StockItem

NAME = "availability"

Outcome = Literal["applied", "duplicate", "caught-up"]


@dataclass(frozen=True)
class AvailabilityChange:
    """One event's effect on the view: the position at ``version`` and any expiry change."""

    sku: str
    location: str
    version: int
    on_hand: int
    reserved: int
    available: int
    occurred_at: datetime
    reservation_expiry: tuple[str, datetime | None] | None = None
    closed_reservation: str | None = None

    @classmethod
    def from_cloudevent(cls, document: dict[str, Any]) -> AvailabilityChange:
        """The change an event document makes; accepts every known event type."""
        data = document["data"]
        expiry: tuple[str, datetime | None] | None = None
        closed: str | None = None
        name = str(document["type"]).split(".")[1]
        if name == "StockReserved":
            expires_at = data.get("expires_at")
            expiry = (data["order_id"], _parse_time(expires_at) if expires_at else None)
        elif name in ("ReservationReleased", "ReservationFulfilled"):
            closed = data["order_id"]
        return cls(
            sku=data["sku"],
            location=data["location"],
            version=int(document["sequence"]),
            on_hand=int(data["on_hand"]),
            reserved=int(data["reserved"]),
            available=int(data["available"]),
            occurred_at=_parse_time(document["time"]),
            reservation_expiry=expiry,
            closed_reservation=closed,
        )


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class ViewRow:
    """A stored row, for reconciliation and status."""

    sku: str
    location: str
    version: int
    on_hand: int
    reserved: int
    available: int
    updated_at: datetime


class AvailabilityViews(AvailabilityReader):
    """Storage of the availability view (SQLite embedded, Cosmos DB in Azure)."""

    @abstractmethod
    def version_of(self, sku: str, location: str) -> int:
        """The stream version the SKU-location's row reflects (0 if none)."""

    @abstractmethod
    def apply(self, change: AvailabilityChange) -> bool:
        """Write the change if the row is exactly at ``change.version - 1``, atomically
        with the version. Returns False (and writes nothing) otherwise."""

    @abstractmethod
    def overdue_reservations(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """SKU-locations holding a reservation whose expiry is at or before ``now``."""

    @abstractmethod
    def rows(self, sku: str | None = None) -> Iterable[ViewRow]:
        """Every row (of one SKU), for reconciliation."""

    @abstractmethod
    def replace(self, row: ViewRow, expiries: dict[str, datetime]) -> None:
        """Overwrite a row and its reservations' expiries (repair after reconciliation)."""

    @abstractmethod
    def events_applied(self) -> int:
        """How many events the view reflects (the sum of the rows' versions)."""

    def last_lag_seconds(self) -> float | None:
        """Commit-to-view lag of the last event applied, if this store keeps it."""
        return None

    def close(self) -> None:
        """Release connections."""


def projection_status(views: AvailabilityViews, lag: float | None = None) -> ProjectionStatus:
    """The projection's status as its views tell it (from any process)."""
    stored = views.last_lag_seconds()
    return ProjectionStatus(NAME, views.events_applied(), lag if stored is None else stored)


History = Callable[[str, str, int, int], list[StockItem.Event]]
"""Reads a stream's events with ``after < version ≤ upto`` (sku, location, after, upto)."""


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
        for _ in range(8):
            # The next version is the common case, so try it first: apply() itself
            # checks the version atomically, and only a refusal needs a second look.
            if self.views.apply(change):
                lag = (datetime.now(UTC) - change.occurred_at).total_seconds()
                self.last_lag_seconds = max(lag, 0.0)
                return "applied"
            current = self.views.version_of(change.sku, change.location)
            if change.version <= current:
                return "duplicate"
            if change.version > current + 1:
                self._catch_up(change, current)
                return "caught-up"
        # Another writer kept moving the row; it is at or past this event by now.
        return "duplicate"

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
                last.available, last.timestamp,
            ),
            expiries,
        )

    def _catch_up(self, change: AvailabilityChange, current: int) -> None:
        missing = self.history(change.sku, change.location, current, change.version)
        for event in missing:
            if event.originator_version <= self.views.version_of(change.sku, change.location):
                continue
            self.views.apply(AvailabilityChange.from_cloudevent(to_cloudevent(event)))
