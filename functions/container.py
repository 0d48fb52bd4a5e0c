"""The composition root: builds the services of one worker process from its settings.

SDK clients and stores are created once per process (Azure Functions runs many
invocations on one worker), lazily on first use, so importing ``function_app`` stays
cheap and a cold start opens connections only when a function needs them. Tests and the
embedded host install their own container with :func:`use_container`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from adapters.clock import SystemClock
from application.commands import StockCommands
from application.ports import Clock, StockItemStore
from application.queries import StockQueries
from application.settings import Settings, load
from application.views import AvailabilityReader, DeadLetterReplayer, OpsStatusReader


@dataclass
class Container:
    """Every service a function may call, wired to the configured adapters."""

    settings: Settings
    store: StockItemStore
    clock: Clock
    commands: StockCommands
    queries: StockQueries
    extras: dict[str, Any]
    # Read models and operations; wired by the pipeline (embedded runtime or Azure).
    availability: AvailabilityReader | None = None
    ops: OpsStatusReader | None = None
    replay: DeadLetterReplayer | None = None

    def close(self) -> None:
        self.store.close()


def build_container(settings: Settings, clock: Clock | None = None) -> Container:
    """Wire the services for ``settings``: SQLite under the data directory, or Cosmos DB."""
    store: StockItemStore
    if settings.event_store == "cosmos":
        from adapters.cosmos import open_cosmos_stock_items  # Azure only: import lazily

        store = open_cosmos_stock_items(settings)
    else:
        from adapters.sqlite import SQLiteStockItems

        store = SQLiteStockItems(settings.data_dir / "events.db")
    clock = clock or SystemClock()
    return Container(
        settings=settings,
        store=store,
        clock=clock,
        commands=StockCommands(store, clock),
        queries=StockQueries(store),
        extras={},
    )


_lock = threading.Lock()
_container: Container | None = None


def get_container() -> Container:
    """The process's container, built from the environment on first use."""
    global _container
    with _lock:
        if _container is None:
            _container = build_container(load())
        return _container


def use_container(container: Container | None) -> None:
    """Install ``container`` for this process (None: build from settings on next use)."""
    global _container
    with _lock:
        _container = container
