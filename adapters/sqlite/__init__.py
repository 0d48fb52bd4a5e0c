"""SQLite: the embedded event store (the outbox) and, later, views and the broker's tables."""

from adapters.sqlite.event_store import SQLiteStockItems

__all__ = ["SQLiteStockItems"]
