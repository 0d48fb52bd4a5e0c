"""Read-model shapes the channels and operators see (DESIGN §5), independent of storage.

Field names are part of the HTTP contract; services return these dataclasses and the HTTP
layer serialises them with ``dataclasses.asdict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class LocationAvailability:
    """One SKU-location row of the availability projection."""

    location: str
    on_hand: int
    reserved: int
    available: int
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class Availability:
    """A SKU across locations: totals and a row per location (eventually consistent)."""

    sku: str
    on_hand: int
    reserved: int
    available: int
    locations: list[LocationAvailability] = field(default_factory=list)

    @classmethod
    def of(cls, sku: str, locations: list[LocationAvailability]) -> Availability:
        """The SKU's totals over its location rows."""
        return cls(
            sku=sku,
            on_hand=sum(r.on_hand for r in locations),
            reserved=sum(r.reserved for r in locations),
            available=sum(r.available for r in locations),
            locations=locations,
        )


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
class RelayStatus:
    """The outbox as the relay sees it."""

    depth: int
    oldest_age_seconds: float | None
    published_total: int = 0
    publish_rate: float = 0.0


@dataclass(frozen=True)
class OutboxStatus:
    depth: int
    oldest_age_seconds: float | None


@dataclass(frozen=True)
class SubscriptionStatus:
    name: str
    active: int
    dead_lettered: int
    lag_seconds: float | None


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    lag_seconds: float | None


@dataclass(frozen=True)
class OpsStatus:
    """The pipeline's health on one page: what ``GET /api/ops/status`` returns."""

    outbox: OutboxStatus
    subscriptions: list[SubscriptionStatus]
    projections: list[ProjectionStatus]
