"""The event-store contract on the embedded back end: SQLite files under ``tmp_path``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.sqlite import SQLiteStockItems
from application.ports import StoreUnavailable
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
