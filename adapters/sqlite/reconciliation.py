"""Reconciliation's own tables in SQLite (``reconciliation.db`` under the data directory).

Held counts, the session history and the movement ledger (see ``application.cadence``).
None of them is a source of truth for stock: streams are. Held counts are the one thing
here that cannot be rebuilt (they wait for a person), so the file is fsynced
(``synchronous=FULL``) like the event store. A Cosmos DB implementation of these ports is
not written yet; in Azure the reconciliation routes answer 503 until it is.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path

from adapters.sortable_time import from_text, to_text
from adapters.sqlite.database import SQLiteDatabase
from application.cadence import LedgerBatch, MovementHistory, StockKey
from application.ports import StoreUnavailable
from application.reconciliation import (
    HeldCount,
    HeldCounts,
    HeldStatus,
    SessionHistory,
    SessionSummary,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS held_counts (
    sku TEXT NOT NULL, location TEXT NOT NULL, count_id TEXT NOT NULL,
    counted INTEGER NOT NULL, counted_at TEXT NOT NULL, on_hand_at_count INTEGER NOT NULL,
    drift_units INTEGER NOT NULL, drift_percent REAL, reason TEXT NOT NULL,
    session_id TEXT NOT NULL, held_at TEXT NOT NULL, status TEXT NOT NULL,
    resolved_at TEXT, applied_delta INTEGER,
    PRIMARY KEY (sku, location, count_id)
);
CREATE INDEX IF NOT EXISTS held_counts_by_id ON held_counts (count_id, status);
CREATE TABLE IF NOT EXISTS count_sessions (
    session_id TEXT PRIMARY KEY, finished_at TEXT NOT NULL, rows INTEGER NOT NULL,
    applied INTEGER NOT NULL, unchanged INTEGER NOT NULL, held INTEGER NOT NULL,
    rejected INTEGER NOT NULL, skipped INTEGER NOT NULL, abs_drift_units INTEGER NOT NULL,
    net_drift_units INTEGER NOT NULL, mean_abs_drift_percent REAL,
    max_abs_drift_units INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS movements (
    sku TEXT NOT NULL, location TEXT NOT NULL, day TEXT NOT NULL, units INTEGER NOT NULL,
    PRIMARY KEY (sku, location, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS movements_by_day ON movements (day);
CREATE TABLE IF NOT EXISTS stock_items (
    sku TEXT NOT NULL, location TEXT NOT NULL, last_counted_at TEXT,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL
);
"""

_HELD_COLUMNS = ("sku, location, count_id, counted, counted_at, on_hand_at_count, drift_units,"
                 " drift_percent, reason, session_id, held_at, status, resolved_at, applied_delta")






class SQLiteReconciliation(HeldCounts, SessionHistory, MovementHistory):
    """The three reconciliation ports in one SQLite file; each write is one transaction."""

    def __init__(self, path: str | Path) -> None:
        self._database = SQLiteDatabase(path, "FULL")
        try:
            self._db().executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"reconciliation store cannot be opened: {error}") from error

    def _db(self) -> sqlite3.Connection:
        return self._database.connection()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._database.transaction()

    # ------------------------------------------------------------ held counts

    def hold(self, held: HeldCount) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                f"INSERT OR IGNORE INTO held_counts ({_HELD_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (held.sku, held.location, held.count_id, held.counted, to_text(held.counted_at),
                 held.on_hand_at_count, held.drift_units, held.drift_percent, held.reason,
                 held.session_id, to_text(held.held_at), held.status,
                 to_text(held.resolved_at) if held.resolved_at else None, held.applied_delta))
            return cursor.rowcount == 1

    @staticmethod
    def _held(row: tuple[object, ...]) -> HeldCount:
        (sku, location, count_id, counted, counted_at, on_hand, units, percent, reason,
         session, held_at, status, resolved_at, applied) = row
        return HeldCount(
            str(sku), str(location), str(count_id), int(str(counted)),
            from_text(str(counted_at)), int(str(on_hand)), int(str(units)),
            None if percent is None else float(str(percent)), str(reason), str(session),
            from_text(str(held_at)), status,  # type: ignore[arg-type]
            None if resolved_at is None else from_text(str(resolved_at)),
            None if applied is None else int(str(applied)))

    def find(self, sku: str, location: str, count_id: str) -> HeldCount | None:
        row = self._db().execute(
            f"SELECT {_HELD_COLUMNS} FROM held_counts"
            " WHERE sku = ? AND location = ? AND count_id = ?",
            (sku, location, count_id)).fetchone()
        return None if row is None else self._held(row)

    def matching(self, count_id: str | None = None, sku: str | None = None,
                 location: str | None = None,
                 status: HeldStatus | None = "pending") -> list[HeldCount]:
        clauses, args = [], []
        for column, value in (("count_id", count_id), ("sku", sku), ("location", location),
                              ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db().execute(
            f"SELECT {_HELD_COLUMNS} FROM held_counts{where}"
            " ORDER BY held_at, sku, location, count_id", args).fetchall()
        return [self._held(r) for r in rows]

    def resolve(self, held: HeldCount) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE held_counts SET status = ?, resolved_at = ?, applied_delta = ?"
                " WHERE sku = ? AND location = ? AND count_id = ?",
                (held.status, to_text(held.resolved_at) if held.resolved_at else None,
                 held.applied_delta, held.sku, held.location, held.count_id))

    # -------------------------------------------------------- session history

    def record(self, summary: SessionSummary) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO count_sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (summary.session_id, to_text(summary.finished_at), summary.rows, summary.applied,
                 summary.unchanged, summary.held, summary.rejected, summary.skipped,
                 summary.abs_drift_units, summary.net_drift_units,
                 summary.mean_abs_drift_percent, summary.max_abs_drift_units))

    def sessions(self, limit: int = 365) -> list[SessionSummary]:
        rows = self._db().execute(
            "SELECT * FROM (SELECT * FROM count_sessions ORDER BY finished_at DESC LIMIT ?)"
            " ORDER BY finished_at", (limit,)).fetchall()
        return [SessionSummary(r[0], from_text(r[1]), *r[2:12]) for r in rows]

    # -------------------------------------------------------- movement ledger

    def checkpoint(self) -> int:
        row = self._db().execute("SELECT position FROM ledger_checkpoint").fetchone()
        return int(row[0]) if row else 0

    def add(self, batch: LedgerBatch) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO movements VALUES (?, ?, ?, ?) ON CONFLICT (sku, location, day)"
                " DO UPDATE SET units = units + excluded.units",
                [(m.sku, m.location, m.day.isoformat(), m.units) for m in batch.movements])
            db.executemany("INSERT OR IGNORE INTO stock_items VALUES (?, ?, NULL)",
                           sorted(batch.stock_items))
            db.executemany(
                "UPDATE stock_items SET last_counted_at = ? WHERE sku = ? AND location = ?"
                " AND (last_counted_at IS NULL OR last_counted_at < ?)",
                [(to_text(at), s, loc, to_text(at)) for (s, loc), at in batch.counts.items()])
            db.execute("INSERT OR REPLACE INTO ledger_checkpoint VALUES (1, ?)",
                       (batch.position,))

    def units_since(self, day: date) -> dict[StockKey, int]:
        rows = self._db().execute(
            "SELECT sku, location, SUM(units) FROM movements WHERE day >= ?"
            " GROUP BY sku, location", (day.isoformat(),))
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def stock_items(self) -> dict[StockKey, datetime | None]:
        rows = self._db().execute("SELECT sku, location, last_counted_at FROM stock_items")
        return {(r[0], r[1]): None if r[2] is None else from_text(r[2]) for r in rows}

    def forget_before(self, day: date) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM movements WHERE day < ?", (day.isoformat(),))

    def close(self) -> None:
        self._database.close()
