"""The event-store port on the ``eventsourcing`` library, whatever its persistence module.

``EventSourcedStockItems`` is the one implementation of :class:`StockItemStore`; a
backend is chosen by the library's ``PERSISTENCE_MODULE`` setting (``eventsourcing.sqlite``
in ``adapters/sqlite``, our Cosmos DB module in ``adapters/cosmos``). The library's
exceptions are translated here into the port's, so no service ever sees a backend's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, cast

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
)

from application.ports import (
    ConcurrencyConflict,
    MultiStreamSave,
    StockItemStore,
    StoreUnavailable,
)
from domain.identifiers import stream_uuid
from domain.stock_item import StockItem

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 100
"""A snapshot every 100 events bounds a cold read to one snapshot plus < 100 events."""

_UNAVAILABLE = (OperationalError, InterfaceError, DatabaseError)


class StockstreamApplication(Application):  # type: ignore[type-arg]
    """The ``eventsourcing`` application behind the store: snapshots, cache, one stream a save.

    An aggregate cache with fast-forward keeps reads cheap and stays correct when another
    writer wins a race: a cache hit still reads events newer than the cached version, and
    a conflicting save leaves the cache untouched (the library caches on read, not save).
    """

    name = "Stockstream"
    is_snapshotting_enabled = True
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {StockItem: SNAPSHOT_INTERVAL}
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
    }

    def _record(self, processing_event: ProcessingEvent[Any]) -> Any:
        # One stream per save: only one partition is atomic on Cosmos DB, so SQLite refuses
        # too and the two back ends keep one contract.
        if len({e.originator_id for e in processing_event.events}) > 1:
            raise MultiStreamSave("a save may append to one stream only")
        return super()._record(processing_event)

    def _take_snapshots(self, processing_event: ProcessingEvent[Any]) -> None:
        # Snapshots are taken after the events committed. A failure here must not surface
        # as a failed command (a blind retry would apply it twice), so it is only logged.
        try:
            super()._take_snapshots(processing_event)
        except PersistenceError:
            log.warning("snapshot skipped", exc_info=True)


class EventSourcedStockItems(StockItemStore):
    """``StockItem`` streams stored through an ``eventsourcing`` application."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        try:
            self.app = StockstreamApplication(env=dict(env or {}))
        except (*_UNAVAILABLE, OSError) as error:
            raise StoreUnavailable(f"event store cannot be opened: {error}") from error

    def get(self, sku: str, location: str) -> StockItem | None:
        try:
            return cast(StockItem, self.app.repository.get(stream_uuid(sku, location)))
        except AggregateNotFoundError:
            return None
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error

    def save(self, item: StockItem) -> list[StockItem.Event]:
        pending = cast(list[StockItem.Event], list(item.pending_events))
        try:
            self.app.save(item)
        except IntegrityError as error:
            raise ConcurrencyConflict(f"stream {item.stream} moved on") from error
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error
        return pending

    def events(
        self, sku: str, location: str, *, after: int = 0, limit: int | None = None
    ) -> list[StockItem.Event]:
        try:
            stored = self.app.events.get(
                stream_uuid(sku, location), gt=after or None, limit=limit
            )
            return cast(list[StockItem.Event], list(stored))
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error

    def close(self) -> None:
        self.app.close()
