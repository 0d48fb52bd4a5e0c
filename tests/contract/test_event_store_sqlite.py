"""The event-store contract on the embedded back end: SQLite files under ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.sqlite import SQLiteStockItems
from tests.contract.event_store_contract import EventStoreContract


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
