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

Memos (``adapters.memos``: idempotency keys, closed orders and count ids, each until it
expires) live in the table ``stock_memos``, written in the same transaction as the events
they come from. A file from before memos existed has them back-filled from its events
when it is first opened.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
)
from tqdm import tqdm

from adapters.event_store import IDEMPOTENCY_WINDOW, EventSourcedStockItems
from adapters.memos import MEMOS, STREAM_MEMOS, StreamMemo
from adapters.sortable_time import to_text
from adapters.sqlite.checkpoints import SQLiteCheckpoints
from application.ports import OutboxReader, OutboxRecord, StoreUnavailable
from domain.stock_item import StockItem

LOCK_TIMEOUT_SECONDS = 30
POOL_SIZE = 8
MAX_OVERFLOW = 56
POOL_TIMEOUT_SECONDS = 30.0


STATEMENT_CACHE_SIZE = 128
"""Prepared statements each connection keeps (Python's default)."""


class _DurableConnectionPool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        """The library's connection (autocommit, WAL, rows by name), with a statement
        cache that holds more than one statement, and ``synchronous=FULL``.

        ``eventsourcing`` 9.5 opens its connections with ``cached_statements=True``,
        which ``sqlite3`` reads as a cache of one: a command's few statements (the memo
        read, BEGIN, the events' and the memos' inserts, COMMIT) then evicted each other
        and every one was compiled again each time it ran — a quarter of a command's
        CPU when commands come one at a time (py-spy ``--native``:
        ``pysqlite_statement_create``). The cache size cannot be changed once a
        connection is open, so the connection is opened here."""
        try:
            sqlite_conn = sqlite3.connect(
                database=self.db_name, uri=True, check_same_thread=False,
                isolation_level=None, cached_statements=STATEMENT_CACHE_SIZE,
                timeout=self.lock_timeout or LOCK_TIMEOUT_SECONDS)
        except (sqlite3.Error, TypeError) as error:
            raise InterfaceError(error) from error
        if not self.is_sqlite_memory_mode:
            if not self.is_journal_mode_wal:
                sqlite_conn.execute("PRAGMA journal_mode=WAL")
                self.is_journal_mode_wal = True
            sqlite_conn.execute("PRAGMA synchronous=FULL")
        sqlite_conn.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=sqlite_conn, max_age=self.max_age)


MEMOS_TABLE = "stock_memos"
PRUNE_EVERY = 1000
"""Expired memos are deleted (a bounded batch) once every this many writes."""
PRUNE_BATCH = 1000


class MemoSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """The library's application recorder, plus the stream's memos in the same transaction."""

    _writes = itertools.count()
    atomic_across_streams = True
    """One transaction covers every stream in the file: a group commit writes several
    streams' events and memos at once (``EventSourcedStockItems.save_many``)."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {MEMOS_TABLE} ("
            "originator_id TEXT NOT NULL, memo TEXT NOT NULL, value TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, expires_at TEXT NOT NULL, "
            "PRIMARY KEY (originator_id, memo)) WITHOUT ROWID",
            f"CREATE INDEX IF NOT EXISTS {MEMOS_TABLE}_expiry ON {MEMOS_TABLE} (expires_at)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        memos: Sequence[StreamMemo] = kwargs.get(MEMOS) or ()
        if memos:
            stream = _stream_text(stored_events[0].originator_id)
            self._insert_memos(c, [(stream, *m) for m in memos])
        across: Sequence[tuple[UUID, StreamMemo]] = kwargs.get(STREAM_MEMOS) or ()
        if across:
            self._insert_memos(c, [(_stream_text(stream), *m) for stream, m in across])
        if next(self._writes) % PRUNE_EVERY == 0:
            c.execute(
                f"DELETE FROM {MEMOS_TABLE} WHERE (originator_id, memo) IN ("
                f"SELECT originator_id, memo FROM {MEMOS_TABLE} WHERE expires_at < ? LIMIT ?)",
                (to_text(datetime.now(UTC)), PRUNE_BATCH),
            )
        return returning

    @staticmethod
    def _insert_memos(
        c: SQLiteCursor, rows: Sequence[tuple[str, str, str, int, datetime]]
    ) -> None:
        # A newer memo replaces an older one of the same name (a key reused after it
        # expired, say): the latest is what a repeat must match.
        c.executemany(
            f"INSERT INTO {MEMOS_TABLE} VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (originator_id, memo) DO UPDATE SET value = excluded.value, "
            "originator_version = excluded.originator_version, "
            "expires_at = excluded.expires_at "
            "WHERE excluded.originator_version > originator_version",
            [(stream, memo, value, version, to_text(expires))
             for stream, memo, value, version, expires in rows],
        )

    def insert_memos(self, rows: Sequence[tuple[str, str, str, int, datetime]]) -> None:
        """Write memos outside a save (the back-fill of a file from before memos)."""
        with self.datastore.transaction(commit=True) as c:
            self._insert_memos(c, rows)

    def select_stream_starts(self, topic: str) -> Iterator[StoredEvent]:
        """Every stream's first event with ``topic`` (``StreamStartRecorder``), read in
        pages by rowid so no transaction stays open while the caller works."""
        after = 0
        while True:
            with self.datastore.transaction(commit=False) as c:
                c.execute(
                    f"SELECT rowid, originator_id, originator_version, topic, state "
                    f"FROM {self.events_table_name} WHERE rowid > ? "
                    "AND originator_version = 1 AND topic = ? ORDER BY rowid LIMIT 500",
                    (after, topic),
                )
                rows = c.fetchall()
            for row in rows:
                yield StoredEvent(originator_id=row[1], originator_version=int(row[2]),
                                  topic=str(row[3]), state=bytes(row[4]))
            if len(rows) < 500:
                return
            after = int(rows[-1][0])

    def select_memo(
        self, originator_id: UUID | str, memo: str, now: datetime
    ) -> tuple[str, int] | None:
        # One SELECT is atomic on its own (the pool's connections are in autocommit
        # mode), so no BEGIN and ROLLBACK around it: they were half of a memo read, which
        # every reservation of a new order makes.
        with self.datastore.get_connection(commit=False) as connection:
            rows = _read(connection, f"SELECT value, originator_version FROM {MEMOS_TABLE} "
                         "WHERE originator_id = ? AND memo = ? AND expires_at > ?",
                         (_stream_text(originator_id), memo, to_text(now)))
        row = rows[0] if rows else None
        return None if row is None else (str(row[0]), int(row[1]))


    def select_memos(
        self, wanted: Sequence[tuple[str, str]], now: datetime
    ) -> dict[tuple[str, str], tuple[str, int]]:
        """Many memos in one read (``MemoBatchRecorder``): a statement per
        :data:`MEMOS_PER_SELECT` pairs, all in one read transaction."""
        found: dict[tuple[str, str], tuple[str, int]] = {}
        if not wanted:
            return found
        moment = to_text(now)
        # As select_memo: no BEGIN and COMMIT around the statements. Each call into
        # SQLite lets go of the GIL, and a group's leader waits to get it back while
        # request threads run; a chunk read in the same implicit snapshot is not needed,
        # as a memo newer than the state decided on is caught by its version.
        with self.datastore.get_connection(commit=False) as connection:
            for start in range(0, len(wanted), MEMOS_PER_SELECT):
                chunk = wanted[start:start + MEMOS_PER_SELECT]
                pairs = ",".join("(?, ?)" for _ in chunk)
                # A join from the pairs (CROSS JOIN keeps that order), so each is one
                # primary-key search: as a row-value IN, SQLite scanned the expiry index.
                rows = _read(
                    connection,
                    f"WITH wanted(stream, memo) AS (VALUES {pairs}) "
                    "SELECT m.originator_id, m.memo, m.value, m.originator_version "
                    f"FROM wanted CROSS JOIN {MEMOS_TABLE} AS m "
                    "ON m.originator_id = wanted.stream AND m.memo = wanted.memo "
                    "WHERE m.expires_at > ?",
                    (*(part for pair in chunk for part in pair), moment),
                )
                for row in rows:
                    found[(str(row[0]), str(row[1]))] = (str(row[2]), int(row[3]))
        return found


MEMOS_PER_SELECT = 400
"""Memo pairs one ``select_memos`` statement asks for (two parameters each, well under
SQLite's limit on a statement's parameters)."""


def _read(connection: Any, statement: str, parameters: tuple[object, ...]) -> list[Any]:
    """One statement's rows outside a transaction of the library's, with SQLite's errors
    mapped as that transaction maps them (so a broken store is still a 503)."""
    try:
        return list(connection._sqlite_conn.execute(statement, parameters).fetchall())
    except sqlite3.OperationalError as error:
        raise OperationalError(error) from error
    except sqlite3.InterfaceError as error:
        raise InterfaceError(error) from error
    except sqlite3.DatabaseError as error:
        raise DatabaseError(error) from error


def _stream_text(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class DurableSQLiteFactory(SQLiteFactory):
    """``eventsourcing``'s SQLite factory with the pool and pragmas described above, and
    an application recorder that keeps memos."""

    application_recorder_class = MemoSQLiteApplicationRecorder

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
        memo_window: timedelta = IDEMPOTENCY_WINDOW,
    ) -> None:
        """``lock_timeout``: seconds a write waits for another writer's lock before the
        command fails with ``StoreUnavailable`` (the HTTP API's 503)."""
        in_memory = str(path) in (":memory:",) or "mode=memory" in str(path)
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        had_memos = in_memory or not Path(path).exists() or _has_table(path, MEMOS_TABLE)
        super().__init__({**sqlite_env(path), "SQLITE_LOCK_TIMEOUT": str(lock_timeout),
                          **(env or {})}, memo_window=memo_window)
        if not had_memos:
            self._backfill_memos(memo_window)

    def _backfill_memos(self, window: timedelta) -> None:
        """Write the memos of every event still inside the window (a file from before
        memos: its ids were remembered in the aggregates' state)."""
        recorder = cast(MemoSQLiteApplicationRecorder, self.app.recorder)
        now = datetime.now(UTC)
        position, total = 0, self.max_position()
        with tqdm(total=total, desc="memos back-filled from events", unit="event",
                  disable=total < 10_000) as progress:
            while records := self.read_after(position, 1000):
                rows = [
                    (_stream_text(r.event.originator_id), memo, value,
                     r.event.originator_version, r.event.timestamp + window)
                    for r in records
                    if r.event.timestamp + window > now
                    for memo, value in r.event.memos()
                ]
                recorder.insert_memos(rows)
                position = records[-1].position
                progress.update(len(records))

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


def _has_table(path: str | Path, table: str) -> bool:
    """Whether the SQLite file at ``path`` has ``table`` (read before the library opens it)."""
    try:
        connection = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)
        try:
            found = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return True  # unreadable: opening it fails next, with the store's own error
    return found is not None
