"""Reconciliation's own tables in SQLite (``reconciliation.db`` under the data directory).

Holds (counts and adjustments waiting for approval), the session history
(:class:`SQLiteReconciliation`) and the movement ledger (:class:`SQLiteMovementLedger`, the
store of ``projections.movements``). None of them is a source of truth for stock: streams
are. Holds are the one thing here that cannot be rebuilt (they wait for a person), so their
connection fsyncs every commit (``synchronous=FULL``) like the event store; the ledger is a
projection, written per event by the pipeline, and its connection uses ``NORMAL`` like the
availability view's (a commit lost to a power cut is a gap the projection fills from the
stream). Cosmos DB implements the same ports in ``adapters.cosmos.reconciliation``.

A hold is one row keyed by its hold id, with the columns its queries filter on and the
whole hold as JSON (``application.holds.hold_record``). A file written before adjustments
could be held has a ``held_counts`` table instead; it is moved into ``holds`` (hold ids
derived) when the file is opened, in one transaction.

The ledger keeps, per SKU-location, the stream version it reflects (``stock_items.version``),
written in the same transaction as the figures. A file written by earlier versions has a
log-fed ledger instead (a ``ledger_checkpoint`` and no versions); it is emptied when the
file is opened, in one transaction, and :meth:`SQLiteMovementLedger.needs_rebuild` then
answers True until the host has rebuilt it from the event store once.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from pathlib import Path

from adapters.sortable_time import from_text, to_text
from adapters.sqlite.database import SQLiteDatabase
from application.cadence import LedgerEntry, StockKey
from application.holds import (
    HeldCount,
    HeldStatus,
    Hold,
    count_hold_id,
    hold_of_record,
    hold_record,
)
from application.ports import HoldStore, MovementLedgerStore, SessionHistory, StoreUnavailable
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
"""

_STOCK_ITEMS = """CREATE TABLE IF NOT EXISTS stock_items (
    sku TEXT NOT NULL, location TEXT NOT NULL, last_counted_at TEXT,
    version INTEGER NOT NULL, PRIMARY KEY (sku, location)
) WITHOUT ROWID"""

_LEDGER_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS movements (
    sku TEXT NOT NULL, location TEXT NOT NULL, day TEXT NOT NULL, units INTEGER NOT NULL,
    PRIMARY KEY (sku, location, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS movements_by_day ON movements (day);
{_STOCK_ITEMS};
CREATE TABLE IF NOT EXISTS ledger_rebuilt (
    id INTEGER PRIMARY KEY CHECK (id = 1), rebuilt_at TEXT NOT NULL
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


class SQLiteReconciliation(HoldStore, SessionHistory):
    """Holds and the session history in one SQLite file; each write is one transaction."""

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

    def close(self) -> None:
        self._database.close()


class SQLiteMovementLedger(MovementLedgerStore):
    """The movement ledger's tables in the same file (see the module docstring); each
    event is one transaction, guarded by the SKU-location's stream version."""

    def __init__(self, path: str | Path) -> None:
        self._database = SQLiteDatabase(path, "NORMAL")
        try:
            self._database.connection().executescript(_LEDGER_SCHEMA)
            self._migrate()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"movement ledger cannot be opened: {error}") from error

    def _db(self) -> sqlite3.Connection:
        return self._database.connection()

    def _migrate(self) -> None:
        """Empty a log-fed ledger of earlier versions (no stream versions), once; it is
        rebuilt from the event store by the host (``needs_rebuild``)."""
        def legacy(db: sqlite3.Connection) -> bool:
            return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                              " AND name = 'ledger_checkpoint'").fetchone() is not None

        if not legacy(self._db()):
            return
        with self._database.transaction() as tx:
            if not legacy(tx):  # another process migrated it meanwhile
                return
            tx.execute("DELETE FROM movements")
            tx.execute("DROP TABLE stock_items")
            tx.execute("DROP TABLE ledger_checkpoint")
            tx.execute("DELETE FROM ledger_rebuilt")
            tx.execute(_STOCK_ITEMS)

    def version_of(self, sku: str, location: str) -> int:
        row = self._db().execute(
            "SELECT version FROM stock_items WHERE sku = ? AND location = ?",
            (sku, location)).fetchone()
        return 0 if row is None else int(row[0])

    def apply(self, entry: LedgerEntry) -> bool:
        with self._database.transaction() as db:
            row = db.execute(
                "SELECT version, last_counted_at FROM stock_items WHERE sku = ? AND location = ?",
                (entry.sku, entry.location)).fetchone()
            if (0 if row is None else int(row[0])) != entry.version - 1:
                return False
            last = None if row is None else row[1]
            if entry.counted_at is not None:
                counted = to_text(entry.counted_at)
                if last is None or counted > last:
                    last = counted
            db.execute(
                "INSERT INTO stock_items VALUES (?, ?, ?, ?) ON CONFLICT (sku, location)"
                " DO UPDATE SET last_counted_at = excluded.last_counted_at,"
                " version = excluded.version",
                (entry.sku, entry.location, last, entry.version))
            if entry.units:
                db.execute(
                    "INSERT INTO movements VALUES (?, ?, ?, ?) ON CONFLICT (sku, location, day)"
                    " DO UPDATE SET units = units + excluded.units",
                    (entry.sku, entry.location, entry.day.isoformat(), entry.units))
            return True

    def batch(self) -> AbstractContextManager[object]:
        return self._database.batch()

    def needs_rebuild(self) -> bool:
        return self._db().execute("SELECT 1 FROM ledger_rebuilt").fetchone() is None

    def rebuilt(self) -> None:
        with self._database.transaction() as db:
            db.execute("INSERT OR REPLACE INTO ledger_rebuilt VALUES (1, ?)",
                       (to_text(datetime.now(UTC)),))

    def units_since(self, day: date) -> dict[StockKey, int]:
        rows = self._db().execute(
            "SELECT sku, location, SUM(units) FROM movements WHERE day >= ?"
            " GROUP BY sku, location", (day.isoformat(),))
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def stock_items(self) -> dict[StockKey, datetime | None]:
        rows = self._db().execute("SELECT sku, location, last_counted_at FROM stock_items")
        return {(r[0], r[1]): None if r[2] is None else from_text(r[2]) for r in rows}

    def forget_before(self, day: date) -> None:
        with self._database.transaction() as db:
            db.execute("DELETE FROM movements WHERE day < ?", (day.isoformat(),))

    def close(self) -> None:
        self._database.close()
