"""Read-model shapes the channels and operators see, independent of storage.

Field names are part of the HTTP contract; services return these dataclasses and the HTTP
layer serialises them with ``dataclasses.asdict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class StockStates:
    """What the stock-state figures of a row mean: the held part of on hand,
    and the supply expected. Rows written before stock states read as nothing held or
    incoming. A mixin: each dataclass below declares the fields, with these defaults."""

    on_hand: int
    damaged: int
    quality_control: int
    incoming_total: int
    in_transit: int

    @property
    def sellable(self) -> int:
        """On hand less the held states."""
        return self.on_hand - self.damaged - self.quality_control

    @property
    def held(self) -> dict[str, int]:
        """The held states' stock: ``{damaged, quality_control}``."""
        return {"damaged": self.damaged, "quality_control": self.quality_control}


@dataclass(frozen=True)
class LocationAvailability(StockStates):
    """One SKU-location row of the availability projection."""

    location: str
    on_hand: int
    reserved: int
    available: int
    version: int
    updated_at: datetime
    damaged: int = 0
    quality_control: int = 0
    incoming_total: int = 0
    in_transit: int = 0
    """The part of ``incoming_total`` that transfers bring."""


@dataclass(frozen=True)
class Availability(StockStates):
    """A SKU across locations: totals and a row per location (eventually consistent)."""

    sku: str
    on_hand: int
    reserved: int
    available: int
    locations: list[LocationAvailability] = field(default_factory=list)
    damaged: int = 0
    quality_control: int = 0
    incoming_total: int = 0
    in_transit: int = 0

    @classmethod
    def of(cls, sku: str, locations: list[LocationAvailability]) -> Availability:
        """The SKU's totals over its location rows."""
        return cls(
            sku=sku,
            on_hand=sum(r.on_hand for r in locations),
            reserved=sum(r.reserved for r in locations),
            available=sum(r.available for r in locations),
            locations=locations,
            damaged=sum(r.damaged for r in locations),
            quality_control=sum(r.quality_control for r in locations),
            incoming_total=sum(r.incoming_total for r in locations),
            in_transit=sum(r.in_transit for r in locations),
        )


@dataclass(frozen=True)
class ViewRow(StockStates):
    """A stored row, for reconciliation and status."""

    sku: str
    location: str
    version: int
    on_hand: int
    reserved: int
    available: int
    updated_at: datetime
    damaged: int = 0
    quality_control: int = 0
    incoming_total: int = 0
    in_transit: int = 0


@dataclass(frozen=True)
class AvailabilityChange(StockStates):
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
    damaged: int = 0
    quality_control: int = 0
    incoming_total: int = 0
    in_transit: int = 0

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
        # Documents published before stock states have none of these: nothing held or
        # incoming, all of on hand sellable.
        held = data.get("held") or {}
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
            damaged=int(held.get("damaged", 0)),
            quality_control=int(held.get("quality_control", 0)),
            incoming_total=int(data.get("incoming_total", 0)),
            in_transit=int(data.get("in_transit", 0)),
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
    depth: int | None
    """None when this host cannot measure it (see ``OpsStatus.unmeasured``), never 0."""
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
class Unmeasured:
    """A figure of the status this host could not measure, and why (it reads ``null``)."""

    field: str
    """Where the figure is, e.g. ``outbox.depth`` or ``subscriptions[availability].lag_seconds``."""
    reason: str


@dataclass(frozen=True)
class OpsStatus:
    """The pipeline's health on one page: what ``GET /api/ops/status`` returns."""

    outbox: OutboxStatus
    subscriptions: list[SubscriptionStatus]
    projections: list[ProjectionStatus]
    unmeasured: list[Unmeasured] = field(default_factory=list)
    """Every figure above that reads null because it could not be measured, with why:
    a made-up 0 would tell an operator that all is well when nobody looked."""
