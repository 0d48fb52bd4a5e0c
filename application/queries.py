"""Queries answered from the event store itself: strongly consistent, never stale."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from application.ports import Clock, StockItemStore
from domain.identifiers import require_quantity, stream_name
from domain.promise import DEFAULT_PROMISE_DAYS, AvailableToPromise, available_to_promise
from domain.stock_item import Position, StockItem

MAX_EVENTS_PER_PAGE = 1000


class StockQueries:
    """Positions and event history of one SKU-location, read from its stream."""

    def __init__(self, store: StockItemStore, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock

    def position(self, sku: str, location: str) -> Position:
        """The current position; an unknown SKU-location is all zeros at version 0.

        Reservations already overdue are left out, as the next command would release
        them (on a copy: a read records nothing; the version stays the stream's).
        """
        stream_name(sku, location)
        item = self.store.get(sku, location)
        if item is None:
            return Position.empty(sku, location)
        if self.clock is not None and item.expire_overdue(self.clock.now()):
            version = item.version - len(item.collect_events())
            return replace(item.position(), version=version)
        return item.position()

    def events(
        self, sku: str, location: str, after: int = 0, limit: int = MAX_EVENTS_PER_PAGE
    ) -> list[StockItem.Event]:
        """Events with version > ``after``, oldest first, at most ``limit`` (≤ 1000)."""
        stream_name(sku, location)
        require_quantity("after", after, minimum=0)
        require_quantity("limit", limit, minimum=1)
        return self.store.events(sku, location, after=after, limit=min(limit, MAX_EVENTS_PER_PAGE))

    def available_to_promise(
        self,
        sku: str,
        location: str,
        days: int = DEFAULT_PROMISE_DAYS,
        as_of: datetime | None = None,
    ) -> AvailableToPromise:
        """ATP per UTC day from ``as_of`` (default: the clock's now) over the current
        position (:func:`domain.promise.available_to_promise`); an unknown SKU-location
        promises nothing but what it does not have (all zeros)."""
        if as_of is None:
            if self.clock is None:
                raise ValueError("available_to_promise needs as_of or a clock")
            as_of = self.clock.now()
        return available_to_promise(self.position(sku, location), as_of, days)

