"""Read-model shapes the channels and operators see (DESIGN §5), independent of storage.

Field names are part of the HTTP contract; services return these dataclasses and the HTTP
layer serialises them with ``dataclasses.asdict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


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


class AvailabilityReader(ABC):
    """Reads the availability projection."""

    @abstractmethod
    def for_sku(self, sku: str) -> Availability:
        """Totals and per-location rows of ``sku``; a SKU never seen has no rows and zeros."""


class PipelineMetrics(Protocol):
    """Where sampled pipeline figures are recorded (``adapters.telemetry.Telemetry``)."""

    def record_outbox(self, depth: int, oldest_age_seconds: float | None) -> None: ...

    def record_backlog(self, subscription: str, count: int) -> None: ...

    def record_dead_letter_depth(self, subscription: str, count: int) -> None: ...


class OpsStatusReader(ABC):
    """Assembles the operator's status page from the outbox, broker and projections."""

    @abstractmethod
    def status(self) -> OpsStatus:
        """The current status; never raises for a component that is merely idle."""

    def sample(self, metrics: PipelineMetrics) -> None:
        """Record the sampled figures (outbox, each subscription's counts) as metrics."""
        status = self.status()
        metrics.record_outbox(status.outbox.depth, status.outbox.oldest_age_seconds)
        for subscription in status.subscriptions:
            metrics.record_backlog(subscription.name, subscription.active)
            metrics.record_dead_letter_depth(subscription.name, subscription.dead_lettered)


class DeadLetterReplayer(ABC):
    """Replays one subscription's dead letters to that subscription only."""

    @abstractmethod
    def replay(self, subscription: str, max_messages: int | None = None) -> int:
        """Re-publish up to ``max_messages`` dead-lettered messages; returns how many.

        Raises ``KeyError`` for an unknown subscription.
        """
