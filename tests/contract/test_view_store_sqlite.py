"""The view-store contract on the embedded back end: a SQLite file under ``tmp_path``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from tests.contract.view_store_contract import LOCATION, ViewStoreContract, change

_BEFORE_STATES = """
CREATE TABLE availability (
    sku TEXT NOT NULL, location TEXT NOT NULL, version INTEGER NOT NULL,
    on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL, available INTEGER NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (sku, location)
) WITHOUT ROWID;
INSERT INTO availability VALUES
    ('SKU-1', 'STORE-1', 4, 12, 2, 10, '2026-03-01T09:00:00.000000Z');
"""


class TestSQLiteViewStore(ViewStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = tmp_path / "views.db"

    def open_views(self) -> SQLiteAvailabilityViews:
        return SQLiteAvailabilityViews(self.path)


def test_a_file_written_before_stock_states_gains_their_columns_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    with sqlite3.connect(path) as db:
        db.executescript(_BEFORE_STATES)

    views = SQLiteAvailabilityViews(path)
    again = SQLiteAvailabilityViews(path)  # opening a migrated file changes nothing
    [row] = views.rows("SKU-1")

    assert (row.version, row.on_hand, row.sellable, row.available) == (4, 12, 12, 10)
    assert (row.held, row.incoming_total, row.in_transit) == (
        {"damaged": 0, "quality_control": 0}, 0, 0)
    assert views.apply(change("SKU-1", 5, 12, 2, damaged=5, incoming_total=3))
    [after] = again.rows("SKU-1")
    assert (after.location, after.sellable, after.damaged, after.incoming_total) == (
        LOCATION, 7, 5, 3)
    views.close()
    again.close()


def test_a_batch_commits_once_at_its_end_and_records_nothing_if_its_block_raises(
    tmp_path: Path,
) -> None:
    views = SQLiteAvailabilityViews(tmp_path / "views.db")
    reader = SQLiteAvailabilityViews(tmp_path / "views.db")  # another connection's view

    with views.batch():
        assert views.apply(change("SKU-1", 1, 5))
        assert reader.version_of("SKU-1", LOCATION) == 0  # not committed yet
    assert reader.version_of("SKU-1", LOCATION) == 1

    with pytest.raises(RuntimeError), views.batch():
        assert views.apply(change("SKU-1", 2, 6))
        raise RuntimeError("the consumer failed before settling")
    assert views.version_of("SKU-1", LOCATION) == 1
    views.close()
    reader.close()


def test_a_change_that_fails_inside_a_batch_is_rolled_back_alone(tmp_path: Path) -> None:
    views = SQLiteAvailabilityViews(tmp_path / "views.db")
    database = views._database

    with views.batch():
        assert views.apply(change("SKU-1", 1, 5))
        with pytest.raises(RuntimeError), database.transaction() as db:
            db.execute("UPDATE availability SET on_hand = 999")
            raise RuntimeError("a handler failed half way")
        assert views.apply(change("SKU-2", 1, 7))

    assert [(r.sku, r.on_hand) for r in views.rows()] == [("SKU-1", 5), ("SKU-2", 7)]
    views.close()
