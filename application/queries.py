"""Queries answered from the event store itself: strongly consistent, never stale."""

from __future__ import annotations

from application.ports import StockItemStore
from domain.identifiers import require_quantity, stream_name
from domain.stock_item import Position, StockItem

MAX_EVENTS_PER_PAGE = 1000


class StockQueries:
    """Positions and event history of one SKU-location, read from its stream."""

    def __init__(self, store: StockItemStore) -> None:
        self.store = store

    def position(self, sku: str, location: str) -> Position:
        """The current position; an unknown SKU-location is all zeros at version 0."""
        stream_name(sku, location)
        item = self.store.get(sku, location)
        return item.position() if item is not None else Position.empty(sku, location)

    def events(
        self, sku: str, location: str, after: int = 0, limit: int = MAX_EVENTS_PER_PAGE
    ) -> list[StockItem.Event]:
        """Events with version > ``after``, oldest first, at most ``limit`` (≤ 1000)."""
        stream_name(sku, location)
        require_quantity("after", after, minimum=0)
        require_quantity("limit", limit, minimum=1)
        return self.store.events(sku, location, after=after, limit=min(limit, MAX_EVENTS_PER_PAGE))
