"""The embedded store of order, transfer and location-group streams: a SQLite file beside the
stock event store's, built the same way (``DurableSQLiteFactory``: WAL, ``synchronous=FULL``,
the same pool, transcoding and memo table), plus the process index.

The index (table ``process_index``) says when each process wants looking at; it is written
in the *same* transaction as the process's events, so it is never behind them: a process
killed between two steps is due for the sweep as surely as its events are stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.sqlite import SQLiteCursor

from adapters.process_streams import PROCESS_INDEX, PUBLISHED_TOPICS, ProcessStore, WakeUp
from adapters.sortable_time import to_text
from adapters.sqlite.event_store import (
    LOCK_TIMEOUT_SECONDS,
    DurableSQLiteFactory,
    MemoSQLiteApplicationRecorder,
)
from application.ports import ProcessOutboxReader, ProcessOutboxRecord, StoreUnavailable

INDEX_TABLE = "process_index"


class ProcessIndexSQLiteRecorder(MemoSQLiteApplicationRecorder):
    """The memo recorder, plus each process's wake-up in the same transaction."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {INDEX_TABLE} ("
            "kind TEXT NOT NULL, key TEXT NOT NULL, wake_at TEXT NOT NULL, "
            "PRIMARY KEY (kind, key)) WITHOUT ROWID",
            f"CREATE INDEX IF NOT EXISTS {INDEX_TABLE}_due ON {INDEX_TABLE} (kind, wake_at)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        wake_ups: Sequence[WakeUp] = kwargs.get(PROCESS_INDEX) or ()
        for kind, key, wake_at in wake_ups:
            if wake_at is None:
                c.execute(f"DELETE FROM {INDEX_TABLE} WHERE kind = ? AND key = ?", (kind, key))
            else:
                c.execute(
                    f"INSERT INTO {INDEX_TABLE} VALUES (?, ?, ?) ON CONFLICT (kind, key) "
                    "DO UPDATE SET wake_at = excluded.wake_at",
                    (kind, key, to_text(wake_at)),
                )
        return returning

    def select_due(self, kind: str, now: datetime, limit: int) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT key FROM {INDEX_TABLE} WHERE kind = ? AND wake_at <= ? "
                "ORDER BY wake_at LIMIT ?",
                (kind, to_text(now), limit),
            )
            return [str(row[0]) for row in c.fetchall()]


class ProcessSQLiteFactory(DurableSQLiteFactory):
    """The durable SQLite factory with the process index."""

    application_recorder_class = ProcessIndexSQLiteRecorder


class SQLiteProcessStore(ProcessStore, ProcessOutboxReader):
    """Order, transfer and location-group streams in one SQLite file (e.g. ``data/processes.db``);
    its commit-ordered log is the outbox of the published process events (orders'), which
    the relay reads after a checkpoint of its own."""

    def read_after(self, position: int, limit: int) -> Sequence[ProcessOutboxRecord]:
        try:
            notifications = self.app.recorder.select_notifications(
                start=position, limit=limit, topics=PUBLISHED_TOPICS,
                inclusive_of_start=False)
        except (OperationalError, InterfaceError, sqlite3.Error) as error:
            raise StoreUnavailable(str(error)) from error
        records = []
        for n in notifications:
            published = self.publishable(self.app.mapper.to_domain_event(n))
            assert published is not None  # the topics are the published ones
            records.append(ProcessOutboxRecord(n.id, published))
        return records

    def max_position(self) -> int:
        try:
            return self.app.recorder.max_notification_id() or 0
        except (OperationalError, InterfaceError, sqlite3.Error) as error:
            raise StoreUnavailable(str(error)) from error

    def __init__(
        self,
        path: str | Path,
        env: Mapping[str, str] | None = None,
        *,
        lock_timeout: int = LOCK_TIMEOUT_SECONDS,
    ) -> None:
        if ":memory:" not in str(path) and "mode=memory" not in str(path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__({
            "PERSISTENCE_MODULE": f"{__name__}:ProcessSQLiteFactory",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": str(lock_timeout),
            **(env or {}),
        })
