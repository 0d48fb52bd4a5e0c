"""Transfers over the real SQLite stores: the stock event store and the process store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.process_streams import SQLiteProcessStore
from application.commands import StockCommands
from application.processes import no_crash
from application.transfers import Transfers
from domain.transfer import Transfer, TransferRequest, transfer_uuid
from tests.azure_processes import azure, broker, clock  # noqa: F401 - fixtures

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SKU, DC, STORE = "SKU-T", "DC-1", "STORE-1"


@dataclass
class World:
    """One service's worth of stores, commands and transfer services."""

    stock: SQLiteStockItems
    processes: SQLiteProcessStore
    clock: ManualClock
    commands: StockCommands

    def transfers(self, commands: StockCommands | None = None,
                  crash_point: Callable[[str], None] = no_crash) -> Transfers:
        """A transfer service (a fresh one is a restarted process: no in-memory state)."""
        return Transfers(self.processes.transfers, commands or self.commands, self.clock,
                         crash_point=crash_point)

    def transfer(self, transfer_id: str) -> Transfer | None:
        """The transfer as its stream says, without driving it."""
        return self.processes.transfers.get(transfer_id)

    def transfer_events(self, transfer_id: str) -> list[str]:
        return [type(e).__name__
                for e in self.processes.app.events.get(transfer_uuid(transfer_id))]

    def on_hand(self, location: str, sku: str = SKU) -> int:
        item = self.stock.get(sku, location)
        return 0 if item is None else item.on_hand

    def incoming(self, location: str, reference: str, sku: str = SKU) -> int:
        item = self.stock.get(sku, location)
        entry = None if item is None else item.incoming.get(reference)
        return 0 if entry is None else int(entry["quantity"])


def open_world(path: Path) -> World:
    stock = SQLiteStockItems(path / "events.db")
    processes = SQLiteProcessStore(path / "processes.db")
    manual = ManualClock(START)
    return World(stock, processes, manual, StockCommands(stock, manual))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = open_world(tmp_path)
    yield w
    w.stock.close()
    w.processes.close()


def request(transfer_id: str = "T-1", quantity: int = 10, from_location: str = DC,
            to_location: str = STORE) -> TransferRequest:
    return TransferRequest.of(transfer_id, SKU, from_location, to_location, quantity)
