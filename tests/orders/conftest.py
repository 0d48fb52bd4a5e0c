"""Orders over the real SQLite stores: the stock event store and the process store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.process_streams import SQLiteProcessStore
from application.commands import StockCommands
from application.orders import LocationGroups, Orders
from application.processes import no_crash
from domain.order import order_uuid
from tests.azure_processes import azure, broker, clock  # noqa: F401 - fixtures

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class World:
    """One service's worth of stores, commands and order services."""

    stock: SQLiteStockItems
    processes: SQLiteProcessStore
    clock: ManualClock
    commands: StockCommands
    groups: LocationGroups

    def orders(self, commands: StockCommands | None = None,
               crash_point: Callable[[str], None] = no_crash) -> Orders:
        """An order service (a fresh one is a restarted process: no in-memory state)."""
        return Orders(self.processes.orders, self.processes.groups, commands or self.commands,
                      self.stock, self.clock, crash_point=crash_point)

    def reserved(self, sku: str, location: str) -> dict[str, int]:
        """The open reservations of a SKU-location, by order id."""
        item = self.stock.get(sku, location)
        if item is None:
            return {}
        return {o: int(r["quantity"]) for o, r in item.reservations.items()}

    def order_events(self, order_id: str) -> list[str]:
        return [type(e).__name__
                for e in self.processes.app.events.get(order_uuid(order_id))]


def open_world(path: Path | str) -> World:
    stock = SQLiteStockItems(f"{path}/events.db" if isinstance(path, Path) else path)
    processes = SQLiteProcessStore(f"{path}/processes.db" if isinstance(path, Path)
                                   else path.replace("stock", "processes"))
    manual = ManualClock(START)
    commands = StockCommands(stock, manual)
    return World(stock, processes, manual, commands, LocationGroups(processes.groups))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = open_world(tmp_path)
    yield w
    w.stock.close()
    w.processes.close()


def line(sku: str, quantity: int = 1, location: str | None = "S1",
         group: str | None = None) -> dict[str, Any]:
    if group is not None:
        return {"sku": sku, "quantity": quantity, "location_group": group}
    return {"sku": sku, "quantity": quantity, "location": location}
