"""The event-store contract on the embedded back end: SQLite files under ``tmp_path``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.sqlite import SQLiteStockItems
from application.ports import StoreUnavailable
from domain.stock_item import StockItem
from tests.contract.event_store_contract import LOCATION, EventStoreContract


class TestSQLiteEventStore(EventStoreContract):
    atomic_across_streams = True

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.db"
        # A directory where the database file should be: SQLite cannot open it.
        self.unreachable_path = tmp_path / "not-a-file"
        self.unreachable_path.mkdir()

    def open_store(self, *, reachable: bool = True) -> SQLiteStockItems:
        return SQLiteStockItems(self.path if reachable else self.unreachable_path)

    def test_a_memo_read_that_sqlite_refuses_raises_store_unavailable(self) -> None:
        """The memo read runs outside the library's transaction (one autocommit SELECT),
        so it maps SQLite's errors itself, as the library's transaction would."""
        store = self.open_store()
        try:
            assert store.recall("SKU-M", LOCATION, "order:o-1") is None
            with sqlite3.connect(self.path) as db:
                db.execute("DROP TABLE stock_memos")
            with pytest.raises(StoreUnavailable):
                store.recall("SKU-M", LOCATION, "order:o-1")
        finally:
            store.close()

    def test_a_many_memo_read_that_sqlite_refuses_raises_store_unavailable(self) -> None:
        store = self.open_store()
        try:
            with sqlite3.connect(self.path) as db:
                db.execute("DROP TABLE stock_memos")
            with pytest.raises(StoreUnavailable):
                store.recall_many([("SKU-M", LOCATION, "order:o-1")])
        finally:
            store.close()

def test_a_hot_stream_is_snapshotted_less_often_as_its_open_reservations_grow(
        tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    item = StockItem.create("HOT", "STORE-1")
    item.receive(1_000_000)
    for n in range(1598):  # saved 100 events at a time, as a busy group commit would
        item.reserve(f"order-{n}", 1, "web")
        if len(item.pending_events) == 100:
            store.save(item)
    store.save(item)

    versions = [s.originator_version for s in store.app.snapshots.get(item.id)]  # type: ignore[union-attr]
    # Every 100 events while it lists fewer than 512 open reservations (a quarter: 128),
    # then every 128, then every 256 (each save here is 100 events).
    assert versions == [100, 200, 300, 400, 500, 600, 700, 800, 900, 1100, 1300, 1600]
    reloaded = SQLiteStockItems(tmp_path / "events.db").get("HOT", "STORE-1")
    assert reloaded is not None and reloaded.position() == item.position()
    store.close()
