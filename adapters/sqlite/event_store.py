"""The embedded event store: ``eventsourcing``'s SQLite recorder, tuned for durability.

Durability settings, and why:

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks
  readers, so positions and projections stay readable during a flash sale.
- ``synchronous=FULL``: every commit is fsynced before it is acknowledged. In WAL mode
  ``NORMAL`` can lose the last transactions on power loss; a lost reservation is an
  oversell, so we pay the fsync.
- a 30 s busy timeout and a larger connection pool: many request threads queue for the
  single writer instead of failing with "database is locked".

Every command's events are inserted in one transaction. The table's ``rowid`` is the
notification id: with SQLite's single writer it rises in commit order, so the relay
reading "after position N" never skips a late commit. The stored events *are* the
outbox; there is no second table to keep in step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteFactory,
)

from adapters.event_store import EventSourcedStockItems
from adapters.sqlite.checkpoints import SQLiteCheckpoints
from application.ports import OutboxReader, OutboxRecord, StoreUnavailable
from domain.stock_item import StockItem

LOCK_TIMEOUT_SECONDS = 30
POOL_SIZE = 8
MAX_OVERFLOW = 56
POOL_TIMEOUT_SECONDS = 30.0


class _DurableConnectionPool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        if not self.is_sqlite_memory_mode:
            connection._sqlite_conn.execute("PRAGMA synchronous=FULL")
        return connection


class DurableSQLiteFactory(SQLiteFactory):
    """``eventsourcing``'s SQLite factory with the pool and pragmas described above."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.datastore.close()
        datastore = SQLiteDatastore.__new__(SQLiteDatastore)
        datastore.pool = _DurableConnectionPool(
            db_name=self.datastore.pool.db_name,
            lock_timeout=self.datastore.pool.lock_timeout or LOCK_TIMEOUT_SECONDS,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_timeout=POOL_TIMEOUT_SECONDS,
        )
        datastore.single_row_tracking = self.datastore.single_row_tracking
        datastore.originator_id_type = self.datastore.originator_id_type
        self.datastore = datastore


def sqlite_env(path: str | Path) -> dict[str, str]:
    """The ``eventsourcing`` settings of an event store in the file at ``path``."""
    return {
        "PERSISTENCE_MODULE": f"{__name__}:DurableSQLiteFactory",
        "SQLITE_DBNAME": str(path),
    }


class SQLiteStockItems(EventSourcedStockItems, OutboxReader):
    """Stock streams in one SQLite file, readable in commit order by the relay."""

    def __init__(
        self,
        path: str | Path,
        env: Mapping[str, str] | None = None,
        *,
        lock_timeout: int = LOCK_TIMEOUT_SECONDS,
    ) -> None:
        """``lock_timeout``: seconds a write waits for another writer's lock before the
        command fails with ``StoreUnavailable`` (the HTTP API's 503)."""
        if str(path) not in (":memory:",) and "mode=memory" not in str(path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__({**sqlite_env(path), "SQLITE_LOCK_TIMEOUT": str(lock_timeout),
                          **(env or {})})

    def read_after(self, position: int, limit: int) -> Sequence[OutboxRecord]:
        try:
            notifications = self.app.recorder.select_notifications(
                start=position, limit=limit, inclusive_of_start=False
            )
        except (OperationalError, InterfaceError, sqlite3.Error) as error:
            raise StoreUnavailable(str(error)) from error
        return [
            OutboxRecord(n.id, cast(StockItem.Event, self.app.mapper.to_domain_event(n)))
            for n in notifications
        ]

    def checkpoints(self) -> SQLiteCheckpoints:
        """The relay's checkpoints, kept in this store's file."""
        return SQLiteCheckpoints(self.app.factory.tracking_recorder())

    def max_position(self) -> int:
        try:
            return self.app.recorder.max_notification_id() or 0
        except (OperationalError, InterfaceError, sqlite3.Error) as error:
            raise StoreUnavailable(str(error)) from error
