"""Reconciliation's own tables in SQLite (``reconciliation.db`` under the data directory).

Holds (counts and adjustments waiting for approval), the session history and the movement
ledger (see ``application.cadence``). None of them is a source of truth for stock: streams
are. Holds are the one thing here that cannot be rebuilt (they wait for a person), so the
file is fsynced (``synchronous=FULL``) like the event store. Cosmos DB implements the same
ports in ``adapters.cosmos.reconciliation``.

A hold is one row keyed by its hold id, with the columns its queries filter on and the
whole hold as JSON (``application.holds.hold_record``). A file written before adjustments
could be held has a ``held_counts`` table instead; it is moved into ``holds`` (hold ids
derived) when the file is opened, in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path

from adapters.sortable_time import from_text, to_text
from adapters.sqlite.database import SQLiteDatabase
from application.cadence import LedgerBatch, StockKey
from application.holds import (
    HeldCount,
    HeldStatus,
    Hold,
    count_hold_id,
    hold_of_record,
    hold_record,
)
from application.ports import HoldStore, MovementHistory, SessionHistory, StoreUnavailable
from application.reconciliation import SessionSummary

_SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (
    hold_id TEXT PRIMARY KEY, kind TEXT NOT NULL, sku TEXT NOT NULL, location TEXT NOT NULL,
    count_id TEXT, status TEXT NOT NULL, held_at TEXT NOT NULL, document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS holds_by_count ON holds (count_id, status);
CREATE INDEX IF NOT EXISTS holds_by_status ON holds (status, held_at);
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

_LEGACY_HELD_COLUMNS = (
    "sku, location, count_id, counted, counted_at, on_hand_at_count, drift_units,"
    " drift_percent, reason, session_id, held_at, status, resolved_at, applied_delta")


def _legacy_held(row: tuple[object, ...]) -> HeldCount:
    """A row of the ``held_counts`` table of files written before holds had ids."""
    (sku, location, count_id, counted, counted_at, on_hand, units, percent, reason,
     session, held_at, status, resolved_at, applied) = row
    return HeldCount(
        str(sku), str(location), str(count_id), int(str(counted)),
        from_text(str(counted_at)), int(str(on_hand)), int(str(units)),
        None if percent is None else float(str(percent)), str(reason), str(session),
        from_text(str(held_at)), status,  # type: ignore[arg-type]
        None if resolved_at is None else from_text(str(resolved_at)),
        None if applied is None else int(str(applied)))


def _row(hold: Hold) -> tuple[object, ...]:
    return (hold.hold_id, hold.kind, hold.sku, hold.location,
            hold.count_id if isinstance(hold, HeldCount) else None, hold.status,
            to_text(hold.held_at), json.dumps(hold_record(hold, to_text)))


def _hold(document: object) -> Hold:
    return hold_of_record(json.loads(str(document)), from_text)


class SQLiteReconciliation(HoldStore, SessionHistory, MovementHistory):
    """The three reconciliation ports in one SQLite file; each write is one transaction."""

    def __init__(self, path: str | Path) -> None:
        self._database = SQLiteDatabase(path, "FULL")
        try:
            self._db().executescript(_SCHEMA)
            self._migrate()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"reconciliation store cannot be opened: {error}") from error

    def _db(self) -> sqlite3.Connection:
        return self._database.connection()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._database.transaction()

    def _migrate(self) -> None:
        """Move a ``held_counts`` table (before hold ids) into ``holds``, once."""
        db = self._db()
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                      " AND name = 'held_counts'").fetchone() is None:
            return
        with self._transaction() as tx:
            rows = tx.execute(f"SELECT {_LEGACY_HELD_COLUMNS} FROM held_counts").fetchall()
            tx.executemany("INSERT OR IGNORE INTO holds VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [_row(_legacy_held(r)) for r in rows])
            tx.execute("DROP TABLE held_counts")

    # ------------------------------------------------------------------ holds

    def hold(self, held: Hold) -> bool:
        with self._transaction() as db:
            cursor = db.execute("INSERT OR IGNORE INTO holds VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                _row(held))
            return cursor.rowcount == 1

    def get(self, hold_id: str) -> Hold | None:
        row = self._db().execute("SELECT document FROM holds WHERE hold_id = ?",
                                 (hold_id,)).fetchone()
        return None if row is None else _hold(row[0])

    def find(self, sku: str, location: str, count_id: str) -> HeldCount | None:
        hold = self.get(count_hold_id(sku, location, count_id))
        return hold if isinstance(hold, HeldCount) else None

    def matching(self, count_id: str | None = None, sku: str | None = None,
                 location: str | None = None,
                 status: HeldStatus | None = "pending") -> list[Hold]:
        clauses, args = [], []
        for column, value in (("count_id", count_id), ("sku", sku), ("location", location),
                              ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db().execute(
            f"SELECT document FROM holds{where}"
            " ORDER BY held_at, sku, location, count_id, hold_id", args).fetchall()
        return [_hold(r[0]) for r in rows]

    def resolve(self, held: Hold, expected: HeldStatus = "pending") -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE holds SET status = ?, document = ? WHERE hold_id = ? AND status = ?",
                (held.status, json.dumps(hold_record(held, to_text)), held.hold_id, expected))
            return cursor.rowcount == 1

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
