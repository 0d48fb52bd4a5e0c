"""What reconciling a count reads: the command service folds the stream (once); the
reconciler itself reads at most the tail back to the previous count, and only for a row
that drifted."""

from __future__ import annotations

from typing import Any

import pytest

from application.count_files import parse_count_rows
from application.holds import HoldPolicy
from domain.stock_item import StockItem
from functions.container import Container, ReconciliationServices
from tests.reconciliation.conftest import count_row, instant


def long_stream(container: Container, sku: str, events: int) -> None:
    """A stream of ``events`` receipts, saved in one write (setup, not what is measured)."""
    item = StockItem.create(sku, "STORE-1")
    for _ in range(events - 1):
        item.receive(1)
    container.store.save(item)


@pytest.fixture
def reads(container: Container, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Events returned by every ``store.events`` call from now on."""
    counted: list[int] = []
    read = container.store.events

    def spy(*args: Any, **kwargs: Any) -> list[StockItem.Event]:
        events = read(*args, **kwargs)
        counted.append(len(events))
        return events

    monkeypatch.setattr(container.store, "events", spy)
    return counted


def test_a_row_without_drift_reads_no_events_beside_the_command(
        container: Container, services: ReconciliationServices, reads: list[int]):
    long_stream(container, "SKU-1", 1000)
    t = instant()
    reads.clear()

    session = services.reconciler.reconcile(
        parse_count_rows([count_row("SKU-1", 999, t)]), policy=HoldPolicy())

    assert [r.outcome for r in session.results] == ["applied"]
    assert sum(reads) == 0  # the stream was read twice per row before (about 2,000 events)


def test_a_drifting_row_reads_back_to_the_previous_count_only(
        container: Container, services: ReconciliationServices, reads: list[int]):
    long_stream(container, "SKU-1", 1000)
    services.reconciler.reconcile(parse_count_rows([count_row("SKU-1", 999, instant(), "C0")]),
                                  policy=HoldPolicy())
    for _ in range(20):
        container.commands.receive("SKU-1", "STORE-1", 1)
    t = instant()
    reads.clear()

    session = services.reconciler.reconcile(
        parse_count_rows([count_row("SKU-1", 1000, t, "C1")]), policy=HoldPolicy())

    assert [(r.outcome, r.drift_units) for r in session.results] == [("applied", -19)]
    assert sum(reads) <= 64
