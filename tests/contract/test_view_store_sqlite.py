"""The view-store contract on the embedded back end: a SQLite file under ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from tests.contract.view_store_contract import ViewStoreContract


class TestSQLiteViewStore(ViewStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = tmp_path / "views.db"

    def open_views(self) -> SQLiteAvailabilityViews:
        return SQLiteAvailabilityViews(self.path)
