"""The process-store contract on SQLite (``processes.db`` of the embedded host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.sqlite.process_streams import SQLiteProcessStore
from tests.contract.process_store_contract import ProcessStoreContract


class TestSQLiteProcessStore(ProcessStoreContract):
    @pytest.fixture(autouse=True)
    def _path(self, tmp_path: Path) -> None:
        self.path = tmp_path / "processes.db"

    def open_store(self, *, reachable: bool = True) -> SQLiteProcessStore:
        if reachable:
            return SQLiteProcessStore(self.path)
        directory = self.path.parent / "a-directory-not-a-file"
        directory.mkdir(exist_ok=True)
        return SQLiteProcessStore(directory)
