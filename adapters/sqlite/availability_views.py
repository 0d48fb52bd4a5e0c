"""The availability view in SQLite: one row per SKU-location, versioned, plus expiries.

The stock-state columns (``damaged``, ``quality_control``, ``incoming_total``,
``in_transit``, docs/stock-states.md) came after the first files were written: opening a file
without them adds them (:func:`_migrate`), at 0, which is what every row written before
them meant (no route could hold or expect stock then). Sellable is on hand less held, so
it is not stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from adapters.sortable_time import from_text, to_text
from adapters.sqlite.database import SQLiteDatabase
from application.ports import AvailabilityViews
from application.views import Availability, AvailabilityChange, LocationAvailability, ViewRow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS availability (
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    version INTEGER NOT NULL,
    on_hand INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    available INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    damaged INTEGER NOT NULL DEFAULT 0,
    quality_control INTEGER NOT NULL DEFAULT 0,
    incoming_total INTEGER NOT NULL DEFAULT 0,
    in_transit INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservation_expiries (
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    order_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (sku, location, order_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservation_expiries_by_time ON reservation_expiries (expires_at);
CREATE TABLE IF NOT EXISTS projection_lag (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    lag_seconds REAL NOT NULL
);
"""

_STATE_COLUMNS = ("damaged", "quality_control", "incoming_total", "in_transit")
"""Columns added with stock states, in this order after ``updated_at``."""
_COLUMNS = ("sku, location, version, on_hand, reserved, available, updated_at, "
            + ", ".join(_STATE_COLUMNS))
_UPSERT = (
    f"INSERT INTO availability ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (sku, location) DO UPDATE SET version = excluded.version,"
    " on_hand = excluded.on_hand, reserved = excluded.reserved,"
    " available = excluded.available, updated_at = excluded.updated_at, "
    + ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS)
)


def _migrate(db: sqlite3.Connection) -> None:
    """Add the stock-state columns to a file written before them (at 0: nothing held or
    incoming, as every row then was). Idempotent; a new file has them already."""
    present = {str(r[1]) for r in db.execute("PRAGMA table_info(availability)")}
    for column in _STATE_COLUMNS:
        if column not in present:
            db.execute(f"ALTER TABLE availability ADD COLUMN {column} INTEGER NOT NULL"
                       " DEFAULT 0")


def _values(row: ViewRow | AvailabilityChange, version: int,
            updated_at: datetime) -> tuple[object, ...]:
    return (row.sku, row.location, version, row.on_hand, row.reserved, row.available,
            to_text(updated_at), row.damaged, row.quality_control, row.incoming_total,
            row.in_transit)


class SQLiteAvailabilityViews(AvailabilityViews):
    """The view in one SQLite file; each change is one transaction (row, version, expiry)."""

    def __init__(self, path: str | Path) -> None:
        # synchronous=NORMAL: a view can always be rebuilt from the event store.
        self._database = SQLiteDatabase(path, "NORMAL")
        self._connection().executescript(_SCHEMA)
        with self._transaction() as db:
            _migrate(db)

    def _connection(self) -> sqlite3.Connection:
        return self._database.connection()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._database.transaction()

    def batch(self) -> AbstractContextManager[object]:
        return self._database.batch()

    def version_of(self, sku: str, location: str) -> int:
        row = self._connection().execute(
            "SELECT version FROM availability WHERE sku = ? AND location = ?", (sku, location)
        ).fetchone()
        return int(row[0]) if row else 0

    def apply(self, change: AvailabilityChange) -> bool:
        with self._transaction() as db:
            row = db.execute(
                "SELECT version FROM availability WHERE sku = ? AND location = ?",
                (change.sku, change.location),
            ).fetchone()
            if (int(row[0]) if row else 0) != change.version - 1:
                return False
            db.execute(_UPSERT, _values(change, change.version, change.occurred_at))
            if change.reservation_expiry is not None:
                order_id, expires_at = change.reservation_expiry
                if expires_at is None:
                    self._delete_expiry(db, change.sku, change.location, order_id)
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO reservation_expiries VALUES (?, ?, ?, ?)",
                        (change.sku, change.location, order_id, to_text(expires_at)),
                    )
            if change.closed_reservation is not None:
                self._delete_expiry(db, change.sku, change.location, change.closed_reservation)
            # The lag of this event, kept with it, so another process (the host's status
            # page) can read what the projection's worker last saw.
            lag = max((datetime.now(UTC) - change.occurred_at).total_seconds(), 0.0)
            db.execute("INSERT OR REPLACE INTO projection_lag VALUES (1, ?)", (lag,))
            return True

    @staticmethod
    def _delete_expiry(db: sqlite3.Connection, sku: str, location: str, order_id: str) -> None:
        db.execute(
            "DELETE FROM reservation_expiries WHERE sku = ? AND location = ? AND order_id = ?",
            (sku, location, order_id),
        )

    def for_sku(self, sku: str) -> Availability:
        locations = [
            LocationAvailability(r.location, r.on_hand, r.reserved, r.available, r.version,
                                 r.updated_at, r.damaged, r.quality_control, r.incoming_total,
                                 r.in_transit)
            for r in self.rows(sku)
        ]
        return Availability.of(sku, locations)

    def overdue_reservations(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        rows = self._connection().execute(
            "SELECT sku, location FROM reservation_expiries WHERE expires_at <= ?"
            " GROUP BY sku, location ORDER BY MIN(expires_at) LIMIT ?",
            (to_text(now), limit),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def rows(self, sku: str | None = None) -> Iterator[ViewRow]:
        query = f"SELECT {_COLUMNS} FROM availability"
        args: tuple[str, ...] = ()
        if sku is not None:
            query += " WHERE sku = ?"
            args = (sku,)
        for r in self._connection().execute(query + " ORDER BY sku, location", args):
            yield ViewRow(r[0], r[1], r[2], r[3], r[4], r[5], from_text(r[6]), *r[7:11])

    def replace(self, row: ViewRow, expiries: dict[str, datetime]) -> None:
        with self._transaction() as db:
            db.execute(_UPSERT, _values(row, row.version, row.updated_at))
            db.execute(
                "DELETE FROM reservation_expiries WHERE sku = ? AND location = ?",
                (row.sku, row.location),
            )
            db.executemany(
                "INSERT INTO reservation_expiries VALUES (?, ?, ?, ?)",
                [(row.sku, row.location, o, to_text(t)) for o, t in expiries.items()],
            )

    def last_lag_seconds(self) -> float | None:
        row = self._connection().execute("SELECT lag_seconds FROM projection_lag").fetchone()
        return None if row is None else float(row[0])

    def events_applied(self) -> int:
        row = self._connection().execute("SELECT COALESCE(SUM(version), 0) FROM availability")
        return int(row.fetchone()[0])

    def close(self) -> None:
        self._database.close()
